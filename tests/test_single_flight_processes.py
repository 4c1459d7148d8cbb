"""Single-flight across processes: Redis's short lock lets one process pay, the others wait."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests._subprocess import PROJECT_ROOT

WORKER = """
import asyncio, json, logging, sys, time
from concurrent.futures import ThreadPoolExecutor
from pydantic import BaseModel
from instructor_cache import RedisCache, instructor_cache

url, prefix, log, start_at, seconds, inputs = sys.argv[1:7]
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

class UserDetail(BaseModel):
    name: str
    age: int

def record(text):
    with open(log, "a") as out:
        out.write(f"{text} {time.time()}\\n")

def pause(text):
    # Decided by the input and the log, never by a global the processes set
    # differently: a global the function reads is part of its key.
    if text != "slow":
        return 0.3
    with open(log) as calls:
        return 60.0 if len(calls.readlines()) == 1 else 0.1

@instructor_cache(RedisCache(url, prefix=prefix), name="tests.processes.extract",
                  single_flight=float(seconds))
def extract(text: str) -> UserDetail:
    record(text)
    time.sleep(pause(text))
    return UserDetail(name=text, age=len(text))

texts = json.loads(inputs)
time.sleep(max(0.0, float(start_at) - time.time()))
with ThreadPoolExecutor(8) as pool:
    results = list(pool.map(extract, texts))
print(json.dumps([r.model_dump() for r in results]))
"""


def _spawn(*args: str) -> subprocess.Popen[str]:
    path = os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")])
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": path},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finished(process: subprocess.Popen[str], timeout: float) -> tuple[str, str]:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail(f"a worker process did not finish within {timeout} s")
    assert process.returncode == 0, err
    return out, err


def test_two_processes_on_one_redis_pay_once_per_input(redis_url: str, tmp_path: Path) -> None:
    """Two processes asking for the same 20 inputs at once make 20 calls in all, not 40."""
    log = tmp_path / "calls.log"
    texts = [f"user{i}" for i in range(20)]
    prefix = f"test:{uuid.uuid4().hex}:"
    start_at = str(time.time() + 2.0)  # both past their imports, then together
    workers = [
        _spawn(redis_url, prefix, str(log), start_at, "30", json.dumps(texts)) for _ in range(2)
    ]
    outputs = [_finished(worker, 60) for worker in workers]
    expected = [{"name": t, "age": len(t)} for t in texts]
    assert [json.loads(out) for out, _ in outputs] == [expected, expected]
    assert sorted(line.split()[0] for line in log.read_text().splitlines()) == sorted(texts)


def test_a_killed_lock_holder_is_taken_over_when_its_lock_expires(
    redis_url: str, tmp_path: Path
) -> None:
    """SIGKILL the process computing: the waiting one takes the expired lock and computes."""
    log = tmp_path / "calls.log"
    prefix = f"test:{uuid.uuid4().hex}:"
    texts = json.dumps(["slow"])
    holder = _spawn(redis_url, prefix, str(log), "0", "4", texts)
    deadline = time.monotonic() + 30
    while not (log.exists() and log.read_text()):  # the holder is inside the call, lock held
        assert time.monotonic() < deadline, "the first worker never started its call"
        time.sleep(0.05)
    waiter = _spawn(redis_url, prefix, str(log), "0", "4", texts)
    time.sleep(0.5)
    holder.send_signal(signal.SIGKILL)
    holder.communicate()
    started = time.monotonic()
    out, err = _finished(waiter, 30)
    assert json.loads(out) == [{"name": "slow", "age": 4}]
    assert time.monotonic() - started < 4 + 3  # the lock's expiry, plus a margin
    (first, began), (second, took_over) = (line.split() for line in log.read_text().splitlines())
    assert (first, second) == ("slow", "slow")
    assert float(took_over) - float(began) > 3.5  # it waited for the lock (4 s) to expire
    assert "waited" not in err  # and took it over; it did not time out
