"""Folding the journal (journal.py) into the SQLite store, for whoever reads the history.

Folders take turns on an flock of their own (`history.journal.fold`): the fold reads
the journal at one length and cuts it back later, and a second folder in between would
cut at a length the first has changed. The journal's own flock is held only to read the
file and, after COMMIT, to cut it, so a run's start or end never waits for SQLite:

1. read the journal's bytes (0..n) under its flock;
2. upsert every row in file order (a run's end after its start) and COMMIT; then purge
   rows older than the newest history_keep the lines carry, a bounded batch;
3. under the flock again: the journal becomes the `running` lines of runs still alive
   (the lock's backup reads them) followed by whatever was appended since n.

A crash between 2 and 3 leaves the lines in the journal, to be folded again: an upsert
of the same row is the same row. A line torn by a crash mid-write is skipped. The file
an older runjob kept run ends in (journal.LEGACY, the same line format) is folded the
same way and removed.
"""

from __future__ import annotations

import os
import time

from runjob.locks.lock import exclusive
from runjob.proc import procid
from runjob.store.journal import COLUMNS, FILENAME, KEEP_FIELD, LEGACY, LOCK_WAIT_S, read_all

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3
    from typing import Any
else:
    try:  # the C module, as in history.py
        import _sqlite3 as sqlite3
    except ImportError:  # pragma: no cover
        import sqlite3

PURGE_BATCH = 500
WAL_TRUNCATE_BYTES = 256 << 10  # about 64 pages: what a reader's WAL recovery reads at most
FOLD_WAIT_S = 60.0  # another reader's fold: a few ms, or a migration's seconds before it


def fold(db: sqlite3.Connection, state_dir: str, wal: str) -> None:
    """Every journal line into the store (sqlite3.Error if it refuses them: they stay); `wal`
    is the store's -wal file."""
    paths = [os.path.join(state_dir, name) for name in (LEGACY, FILENAME)]
    with exclusive(os.path.join(state_dir, FILENAME + ".fold"), wait_s=FOLD_WAIT_S):
        for path in paths:
            if os.path.lexists(path):
                _fold_file(db, path, wal, legacy=path == paths[0])


def _fold_file(db: sqlite3.Connection, path: str, wal: str, legacy: bool) -> None:
    db.execute("BEGIN IMMEDIATE")
    try:
        with exclusive(path, LOCK_WAIT_S) as fd:
            data = read_all(fd)
        lines = [(line, row) for line in data.split(b"\n") if (row := _row(line)) is not None]
        _upsert(db, [row for _, row in lines])
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    _purge(db, lines)
    _checkpoint_big_wal(db, wal)
    if legacy:
        os.unlink(path)
        return
    live = _live(lines)
    with exclusive(path, LOCK_WAIT_S) as fd:
        tail = read_all(fd, len(data))
        os.ftruncate(fd, 0)
        os.pwrite(fd, b"".join(line + b"\n" for line in live) + tail, 0)


def _row(line: bytes) -> dict[str, Any] | None:
    if not line.startswith(b"{"):
        return None
    from runjob.records import jsonout

    try:
        row = jsonout.loads(line.decode())
    except ValueError:
        return None  # a line torn by a crash mid-write: the rest still counts
    if not isinstance(row, dict) or not isinstance(row.get("run_id"), str):
        return None
    if not all(isinstance(row.get(n), str | int | float | None) for n in COLUMNS):
        return None  # not a row runjob wrote
    return row


def _upsert(db: sqlite3.Connection, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        names = [n for n in row if n in COLUMNS]
        updates = ", ".join(f"{n}=excluded.{n}" for n in names if n != "run_id")
        db.execute(
            f"INSERT INTO runs ({', '.join(names)}) VALUES ({', '.join('?' * len(names))}) "
            f"ON CONFLICT(run_id) DO UPDATE SET {updates}",
            tuple(row[n] for n in names),
        )


def _purge(db: sqlite3.Connection, lines: list[tuple[bytes, dict[str, Any]]]) -> None:
    """Rows older than history_keep go, a batch at least as large as what came in (cheap: indexed)."""
    keeps = [row[KEEP_FIELD] for _, row in lines if isinstance(row.get(KEEP_FIELD), float | int)]
    if not keeps:
        return
    try:
        db.execute(
            "DELETE FROM runs WHERE id IN (SELECT id FROM runs WHERE started < ? ORDER BY started LIMIT ?)",
            (time.time() - keeps[-1], max(PURGE_BATCH, 2 * len(lines))),
        )
    except sqlite3.Error:
        pass  # housekeeping: the next fold tries again


def _checkpoint_big_wal(db: sqlite3.Connection, wal: str) -> None:
    """Copy a WAL past WAL_TRUNCATE_BYTES into the store and empty it. Each reader is the
    store's only connection and ends with os._exit, so the next one rebuilds the WAL index
    from the file (recovery), which forgets what was checkpointed: without this the WAL only
    grows, and every reader reads all of it. TRUNCATE waits (busy_timeout) for readers that
    hold an older snapshot; our readers hold one for milliseconds."""
    try:
        if os.path.getsize(wal) > WAL_TRUNCATE_BYTES:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    except (OSError, sqlite3.Error):
        pass  # housekeeping: the next fold tries again


def _live(lines: list[tuple[bytes, dict[str, Any]]]) -> list[bytes]:
    """The `running` lines of runs whose newest line is that one and whose process lives."""
    newest: dict[str, tuple[bytes, dict[str, Any]]] = {}
    for line, row in lines:
        newest[row["run_id"]] = (line, row)
    return [
        line
        for line, row in newest.values()
        if row.get("status") == "running" and procid.alive(row.get("pid"), row.get("pid_start"))
    ]
