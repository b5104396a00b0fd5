"""Kept runs (SPEC section 11): each run's records in state_dir/runs/JOB/RUN_ID.jsonl, and
`runjob logs RUN_ID [--follow]`, which prints them as they were written.

The run path writes these files (logs.JsonSink); this module only reads them.
"""

from __future__ import annotations

import json
import os
import sys
import time

from runjob.errors import UsageError
from runjob.proc import procid
from runjob.records.kept_file import Expander
from runjob.registry import loader

PREFIX_MIN = 8
FOLLOW_POLL_S = 0.2  # how often --follow looks for new records (a file has no wakeup to wait on)


def runs_dir(state_dir: str) -> str:
    return os.path.join(state_dir, "runs")


def find(state_dir: str, given: str) -> str:
    """The kept file of the run whose id is or starts with `given` (8+ characters, unique)."""
    given = given.lower()
    if len(given) < PREFIX_MIN or given.strip("0123456789abcdef-"):
        raise UsageError(f'run id "{given}": give the run id or a prefix of at least {PREFIX_MIN} of its characters')
    found = []
    top = runs_dir(state_dir)
    for job in _listdir(top):
        found += [
            os.path.join(top, job, n)
            for n in _listdir(os.path.join(top, job))
            if n.startswith(given) and n.endswith(".jsonl")
        ]
    if not found:
        raise UsageError(f'no kept run with id "{given}" in {top} (see `runjob history`)')
    if len(found) > 1:
        ids = ", ".join(sorted(os.path.basename(p)[:-6] for p in found)[:5])
        raise UsageError(f'run id "{given}" is ambiguous: {len(found)} kept runs start with it ({ids})')
    return found[0]


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except (FileNotFoundError, NotADirectoryError):
        return []


def show(config_path: str | None, given: str, follow: bool) -> int:
    """Print the run's records; with `follow`, until its runjob has ended (after run.end come
    the notifications' records) and every record is out."""
    path = find(loader.load(config_path).state_dir, given)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    out = sys.stdout.buffer
    expander = Expander()  # plain output lines are kept compact: see records/kept_file.py
    try:
        while True:
            chunk = os.read(fd, 1 << 16)
            if chunk:
                whole = expander.feed(chunk)
                if whole:
                    out.write(whole)
                    out.flush()
                continue
            if not follow:
                break
            if not _writer_alive(path):
                follow = False  # one more read: what it wrote before it exited
                continue
            time.sleep(FOLLOW_POLL_S)
    finally:
        os.close(fd)
    if expander.rest:  # a record torn by a crash: shown as it is
        out.write(expander.rest + b"\n")
    return 0


def _writer_alive(path: str) -> bool:
    """Is the runjob that writes `path` still running (its pid, from the first record)?"""
    with open(path, "rb") as f:
        first = f.readline()
    try:
        pid = json.loads(first).get("pid")
    except (ValueError, AttributeError):
        return False
    return isinstance(pid, int) and procid.alive(pid, None)
