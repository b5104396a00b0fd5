"""Run ends the history store could not take, kept until it can.

Finishing a run's row can fail after the run really ended: the store locked past its busy
timeout by a long reader, a full disk for a moment, a broken trigger. The row would stay
`running` and later show as `crashed`, a false account of a run that ended. So the whole
row goes, as one JSON line, to `state_dir/history.pending` (0600, O_APPEND, never through a
symlink), and the next connection to the store (the next run, `status`, `history`) folds
the lines in and empties the file. Writers and the folder take an flock on the file, so
no line is lost between the read and the truncate.
"""

from __future__ import annotations

import fcntl
import os

from runjob import safefs
from runjob.records.logs import encode

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3
    from typing import Any

FILENAME = "history.pending"


def path_in(state_dir: str) -> str:
    return os.path.join(state_dir, FILENAME)


def keep(state_dir: str, row: dict[str, Any]) -> None:
    """Append `row` (a whole history row) for the next connection to fold in."""
    fd = safefs.open_private(path_in(state_dir), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, (encode(row) + "\n").encode())
    finally:
        os.close(fd)


def fold(db: sqlite3.Connection, state_dir: str) -> None:
    """Write the kept rows into the store (insert, or finish the row the run started), then
    empty the file. If the store still refuses them, they stay for the next connection."""
    path = path_in(state_dir)
    if not os.path.lexists(path):  # the usual case: one lstat per connection
        return
    fd = safefs.open_private(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        rows = _read(fd)
        if rows:
            _upsert(db, rows)
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)


def _read(fd: int) -> list[dict[str, Any]]:
    import json  # only when there is something to fold

    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    rows = []
    for line in b"".join(chunks).splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line torn by a crash mid-write: the rest still counts
        if isinstance(row, dict) and isinstance(row.get("run_id"), str):
            rows.append(row)
    return rows


def _upsert(db: sqlite3.Connection, rows: list[dict[str, Any]]) -> None:
    db.execute("BEGIN IMMEDIATE")
    try:
        for row in rows:
            names = list(row)
            updates = ", ".join(f"{n}=excluded.{n}" for n in names if n != "run_id")
            db.execute(
                f"INSERT INTO runs ({', '.join(names)}) VALUES ({', '.join('?' * len(names))}) "
                f"ON CONFLICT(run_id) DO UPDATE SET {updates}",
                tuple(row.values()),
            )
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
