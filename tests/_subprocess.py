"""Python code in a fresh interpreter: its JSON under a hash seed, or a forked child's fate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def json_under_hash_seed(code: str, hash_seed: str, *args: str) -> Any:
    """What ``code`` prints as JSON, run from the project root with ``PYTHONHASHSEED=hash_seed``."""
    path = os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": path}
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def waiting_for_the_child(seconds: float, failure: str) -> str:
    """Script lines (needing os, signal, sys, time) that wait for the forked child ``pid``.

    The script exits with the child's status, or kills a child still
    running after ``seconds`` and exits with ``failure``: a hang fails the
    test instead of holding pytest.
    """
    return f"""
deadline = time.monotonic() + {seconds}
while time.monotonic() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        sys.exit(os.waitstatus_to_exitcode(status))
    time.sleep(0.05)
os.kill(pid, signal.SIGKILL)
os.waitpid(pid, 0)
sys.exit({failure!r})
"""
