"""Another process holding a DiskCache's SQLite database locked, for fault tests."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

__all__ = ["locked"]

LOCKER = """
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], timeout=5, isolation_level=None)
con.execute("BEGIN EXCLUSIVE")
con.execute("SELECT count(*) FROM Cache").fetchall()
print("locked", flush=True)
sys.stdin.readline()
"""


@contextlib.contextmanager
def locked(database: Path, release_after: float) -> Iterator[None]:
    """Another process holds ``database`` locked, at most ``release_after`` seconds."""
    process = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(database)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    timer = threading.Timer(release_after, process.kill)  # a wait of an hour fails, not hangs
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "locked"
        timer.start()
        yield
    finally:
        timer.cancel()
        process.kill()
        process.communicate(timeout=10)
