"""A DiskCache read held inside its SELECT while its database file is removed, for crash tests.

The script below, run in a subprocess (a crash must not take pytest down),
writes 6,000 entries to a WAL that keeps its frames, starts one
``get_many`` over all of them on a thread, holds it at its first
progress-handler tick (inside the statement) and removes the database
file, leaving ``-wal`` and ``-shm``. A test appends what happens next.
"""

A_READ_PAUSED_INSIDE_ITS_SELECT = """
import os, sys, threading
from instructor_cache import DiskCache
from instructor_cache.errors import BackendError

directory = os.path.join(sys.argv[1], "cache")
database = os.path.join(directory, "cache.db")
backend = DiskCache(directory, sqlite_wal_autocheckpoint=0)  # a WAL that keeps its frames
keys = [f"k{i}" for i in range(6000)]
backend.set_many({key: "x" * 3000 for key in keys})
paused, resume = threading.Event(), threading.Event()

def pause_once(frame, event, arg):
    if event == "call" and frame.f_code.co_name == "__call__" and not paused.is_set():
        if frame.f_code.co_filename.endswith("_planted.py"):  # the Watchdog's tick
            paused.set()
            resume.wait(30)

outcome = []

def read():
    sys.settrace(pause_once)
    try:
        outcome.append(sum(text is not None for text in backend.get_many(keys)))
    except BackendError as exc:
        outcome.append(repr(exc))

reader = threading.Thread(target=read)
reader.start()
assert paused.wait(30)
os.remove(database)  # the database file goes; its -wal and -shm stay
"""
