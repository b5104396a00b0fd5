"""The run's side of the history: its rows appended to `state_dir/history.journal`.

A run never opens SQLite. Loading it (`_sqlite3` and the library behind it) and its
statements were a fifth of every run's start-up; a run that starts every minute pays that
1,440 times a day for a table it never reads. So a run appends whole rows, one JSON line
each, to the journal: its `running` row when it starts, the finished row when it ends
(or one `skipped` row). Whoever reads the history (`status`, `history`, `stale`, the
report, the dashboard, metrics, `tick`'s interval schedules) first folds the journal into
the store (history_fold.py), and so does a run whose end leaves the journal larger than
FOLD_BYTES, so the file stays small whether anyone reads the history or not.

Durability is what the store had with synchronous=NORMAL: a line is in the kernel's page
cache when write() returns, so it survives runjob being killed at any later point; a power
loss can lose the newest lines (a torn last line is skipped when folded, never misread).

The journal also backs up the lock (locks/lock.py): a run that took a lock file a tmp
cleaner re-created under a live holder must find that holder's `running` row and stand
back. The fold keeps every live run's `running` line in the journal, so the start reads
only this file: under an exclusive flock, it looks for a live run of its lock key on this
host, and appends its own row only if there is none, in one critical section.

Mode 0600, never through a symlink (safefs). Every write and the fold's rewrite hold an
exclusive flock (locks.lock.exclusive) for a few microseconds; a process that keeps it
longer (stopped with SIGSTOP) is waited for at most LOCK_WAIT_S, then the run fails with
exit 125 naming it.
"""

from __future__ import annotations

import os

from runjob.proc import procid
from runjob.records.encoding import dumps, encode, timestamp

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


FILENAME = "history.journal"
LEGACY = "history.pending"  # where an older runjob kept the run ends its store refused (same lines)
FOLD_BYTES = 256 << 10  # about 300 runs: a run folds (and pays for SQLite) once in that many
LOCK_WAIT_S = 30.0  # a write holds the flock for microseconds; only a stopped process longer
KEEP_FIELD = "history_keep"  # an end row carries the registry's history_keep, for the fold's purge
RUN_ID_HEAD = b'{"run_id": "'
COLUMNS = (  # a history row's fields: a journal line's, and the store's `runs` columns
    "run_id",
    "job",
    "params",
    "correlation_id",
    "host",
    "pid",
    "lock_key",
    "started",
    "ended",
    "status",
    "exit_code",
    "attempts",
    "duration_s",
    "stderr_tail",
    "max_rss_kb",
    "pid_start",
)


def path_in(state_dir: str) -> str:
    return os.path.join(state_dir, FILENAME)


def has_lines(state_dir: str) -> bool:
    """Is there anything to fold: a journal, or an older runjob's pending file, not empty?"""
    for name in (LEGACY, FILENAME):
        try:
            if os.lstat(os.path.join(state_dir, name)).st_size:  # a symlink is refused when opened
                return True
        except FileNotFoundError:
            pass
    return False


def _ended(line: bytes, data: bytes, end: int) -> bool:
    """Does a later line name the run of `line` (its end, usually)? Read from the bytes: a
    row starts with its run id (`_row` in recorder.py puts it first), so no parsing."""
    run_id = line[: len(RUN_ID_HEAD) + 37]  # the head, 36 characters, the closing quote
    if not run_id.startswith(RUN_ID_HEAD) or not run_id.endswith(b'"'):
        return False  # not a row this runjob wrote: parsed and judged by its fields
    return data.find(b'"run_id": ' + run_id[len(RUN_ID_HEAD) - 1 :], end) != -1


def read_all(fd: int, start: int = 0) -> bytes:
    chunks = []
    while chunk := os.pread(fd, 1 << 20, start):
        chunks.append(chunk)
        start += len(chunk)
    return b"".join(chunks)


def append(fd: int, rows: list[dict[str, Any]]) -> int:
    """Append whole lines at the end (the caller holds the flock); the file's new size."""
    data = "".join(encode(row) + "\n" for row in rows).encode("utf-8", "replace")  # never a lone surrogate
    end = os.lseek(fd, 0, os.SEEK_END)
    if end and os.pread(fd, 1, end - 1) != b"\n":
        data = b"\n" + data  # a line a crash tore stays alone, and is skipped: never glued to ours
    os.pwrite(fd, data, end)
    return end + len(data)


def live_holder(data: bytes, lock_key: str, host: str) -> dict[str, Any] | None:
    """A live run of another process on `host` whose newest line in `data` is a `running`
    row for `lock_key`, or None. Bytes are searched first: a line is parsed only when it
    names the key and is `running`, and it is live only if no later line names its run."""
    key = f'"lock_key": {dumps(lock_key)}'.encode()
    at = data.find(key)
    while at != -1:
        begin, end = data.rfind(b"\n", 0, at) + 1, data.find(b"\n", at)
        if end == -1:
            return None  # a torn last line (a crash mid-write) holds nothing
        holder = _running(data[begin:end], data, end, lock_key, host)
        if holder is not None:
            return holder
        at = data.find(key, end)
    return None


def _running(line: bytes, data: bytes, end: int, lock_key: str, host: str) -> dict[str, Any] | None:
    if b'"status": "running"' not in line or _ended(line, data, end):
        return None
    from runjob.records import jsonout

    try:
        row = jsonout.loads(line.decode())
    except ValueError:
        return None
    if not isinstance(row, dict) or (row.get("lock_key"), row.get("host")) != (lock_key, host):
        return None
    pid, pid_start = row.get("pid"), row.get("pid_start")
    if pid == os.getpid() or not isinstance(pid, int) or not procid.alive(pid, pid_start):
        return None
    since = row.get("started")
    return {
        "pid": pid,
        "pid_start": pid_start,
        "run_id": row.get("run_id"),
        "job": row.get("job"),
        "since": timestamp(since) if isinstance(since, float | int) else None,
    }
