"""The queue in the state dir's SQLite (`queue.sqlite3`): one host, any number of workers.

A claim is one BEGIN IMMEDIATE transaction (lapsed leases back to pending, then the best
due entry taken under a lease), so two workers never take the same entry. WAL mode keeps
readers (`runjob queue`) off the writers' way.

Writers queue on an flock (`queue.sqlite3.lock`) before they take SQLite's write lock:
SQLite's busy handler sleeps 1, 2, 5, 10 ... ms between tries however soon the lock is
free (8 worker processes: more than one such sleep per run), where a blocked flock is
woken the moment its holder lets go. A transaction holds it for well under a millisecond,
and the kernel drops it with a holder that dies.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import time

from runjob import safefs
from runjob.errors import InternalError
from runjob.queue.store import ALL, FIELDS, new_id

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from runjob.queue.store import Item

FILENAME = "queue.sqlite3"
SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, job TEXT NOT NULL,
    params TEXT NOT NULL, priority INTEGER NOT NULL, enqueued_at REAL NOT NULL,
    not_before REAL NOT NULL, state TEXT NOT NULL, worker TEXT, lease_until REAL,
    takes INTEGER NOT NULL DEFAULT 0, exit_code INTEGER, stderr_tail TEXT
);
CREATE INDEX IF NOT EXISTS entries_order ON entries (state, priority DESC, seq);
CREATE INDEX IF NOT EXISTS entries_lease ON entries (state, lease_until);
CREATE TABLE IF NOT EXISTS paused (job TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS workers (id TEXT PRIMARY KEY, info TEXT NOT NULL, expires REAL NOT NULL);
"""


class SqliteStore:
    def __init__(self, state_dir: str) -> None:
        self.path = path = os.path.join(state_dir, FILENAME)
        try:
            safefs.ensure_dir(state_dir, top=True)
            _create_private(path)
            self.gate = safefs.open_private(path + ".lock", os.O_RDWR | os.O_CREAT)
            self.db = sqlite3.connect(path, timeout=30, isolation_level=None)
            self.db.execute("PRAGMA busy_timeout = 30000")
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = NORMAL")
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as e:
            raise InternalError(f"queue store {path} is unusable: {e}") from None
        except OSError as e:
            raise InternalError(f"cannot open queue store {path}: {e.strerror}") from None

    def put(self, job: str, params: dict[str, str], priority: int, not_before: float) -> str:
        return self.put_many([(job, params, priority, not_before)])[0]

    def put_many(self, items: list[Item]) -> list[str]:
        """Every item or none (one transaction: `tick` puts a minute's due runs at once)."""
        now = time.time()
        rows = [(new_id(), job, json.dumps(params), prio, now, nb) for job, params, prio, nb in items]
        try:
            with self._tx():
                self.db.executemany(
                    "INSERT INTO entries (id, job, params, priority, enqueued_at, not_before, state) "
                    "VALUES (?, ?, ?, ?, ?, ?, 'pending')",
                    rows,
                )
        except sqlite3.Error as e:
            raise InternalError(f"cannot enqueue in {self.path}: {e}") from None
        return [row[0] for row in rows]

    def claim(self, worker: str, lease: float) -> dict[str, Any] | None:
        now = time.time()
        with self._tx():
            self.db.execute(
                "UPDATE entries SET state = 'pending', worker = NULL, lease_until = NULL "
                "WHERE state = 'running' AND lease_until < ?",
                (now,),
            )
            if self.db.execute("SELECT 1 FROM paused WHERE job = ?", (ALL,)).fetchone():
                return None
            row = self.db.execute(
                f"SELECT {', '.join(FIELDS)} FROM entries WHERE state = 'pending' AND not_before <= ? "
                "AND job NOT IN (SELECT job FROM paused) ORDER BY priority DESC, seq LIMIT 1",
                (now,),
            ).fetchone()
            if row is None:
                return None
            self.db.execute(
                "UPDATE entries SET state = 'running', worker = ?, lease_until = ?, takes = takes + 1 WHERE id = ?",
                (worker, now + lease, row[0]),
            )
        return _entry(row) | {"state": "running", "worker": worker, "lease_until": now + lease, "takes": row[9] + 1}

    def renew(self, ids: list[str], worker: str, lease: float) -> None:
        until = time.time() + lease
        with self._tx():
            for entry_id in ids:
                self.db.execute(
                    "UPDATE entries SET lease_until = ? WHERE id = ? AND worker = ? AND state = 'running'",
                    (until, entry_id, worker),
                )

    def finish(self, entry_id: str, worker: str) -> None:
        self._write("DELETE FROM entries WHERE id = ? AND worker = ?", entry_id, worker)

    def bury(self, entry_id: str, worker: str, exit_code: int | None, stderr_tail: str) -> None:
        self._write(
            "UPDATE entries SET state = 'dead', lease_until = NULL, exit_code = ?, stderr_tail = ? "
            "WHERE id = ? AND worker = ?",
            exit_code,
            stderr_tail,
            entry_id,
            worker,
        )

    def release(self, entry_id: str, worker: str) -> None:
        self._write(
            "UPDATE entries SET state = 'pending', worker = NULL, lease_until = NULL "
            "WHERE id = ? AND worker = ? AND state = 'running'",
            entry_id,
            worker,
        )

    def entries(self) -> list[dict[str, Any]]:
        rows = self.db.execute(f"SELECT {', '.join(FIELDS)} FROM entries ORDER BY priority DESC, seq")
        now = time.time()
        return [_shown(_entry(row), now) for row in rows]

    def retry(self, entry_id: str) -> bool:
        return self._change(
            "UPDATE entries SET state = 'pending', worker = NULL, exit_code = NULL, "
            "stderr_tail = NULL, not_before = 0 WHERE id = ? AND state = 'dead'",
            entry_id,
        )

    def drop(self, entry_id: str) -> bool:
        return self._change("DELETE FROM entries WHERE id = ? AND state != 'running'", entry_id)

    def set_priority(self, entry_id: str, priority: int) -> bool:
        return self._change("UPDATE entries SET priority = ? WHERE id = ?", priority, entry_id)

    def pause(self, job: str) -> None:
        self._write("INSERT OR IGNORE INTO paused (job) VALUES (?)", job)

    def resume(self, job: str) -> None:
        self._write(
            "DELETE FROM paused WHERE job = ?" + ("" if job == ALL else " OR job = ?"),
            *((job,) if job == ALL else (job, ALL)),
        )

    def paused(self) -> list[str]:
        return [row[0] for row in self.db.execute("SELECT job FROM paused ORDER BY job")]

    def beat(self, worker: str, info: dict[str, Any], ttl: float) -> None:
        self._write(
            "INSERT OR REPLACE INTO workers (id, info, expires) VALUES (?, ?, ?)",
            worker,
            json.dumps(info),
            time.time() + ttl,
        )

    def gone(self, worker: str) -> None:
        self._write("DELETE FROM workers WHERE id = ?", worker)

    def workers(self) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT id, info FROM workers WHERE expires >= ? ORDER BY id", (time.time(),))
        return [{"id": row[0]} | json.loads(row[1]) for row in rows]

    def close(self) -> None:
        self.db.close()
        os.close(self.gate)

    def private_fds(self) -> tuple[int, ...]:
        """What a forked run must close: an flock belongs to the open file, so a fork that kept
        the gate's descriptor would hold the gate of a worker killed inside a transaction
        until that run ended, and every writer would wait for it."""
        return (self.gate,)

    def _change(self, sql: str, *args: Any) -> bool:
        return self._write(sql, *args) == 1

    def _write(self, sql: str, *args: Any) -> int:
        """One statement in a transaction of its own, behind the gate; the rows it changed."""
        with self._tx():
            return self.db.execute(sql, args).rowcount

    def _tx(self) -> _Transaction:
        return _Transaction(self.db, self.gate)


class _Transaction:
    """The gate, then BEGIN IMMEDIATE ... COMMIT (ROLLBACK on an error): the write lock is taken up front."""

    def __init__(self, db: sqlite3.Connection, gate: int) -> None:
        self.db, self.gate = db, gate

    def __enter__(self) -> None:
        fcntl.flock(self.gate, fcntl.LOCK_EX)
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except BaseException:
            fcntl.flock(self.gate, fcntl.LOCK_UN)
            raise

    def __exit__(self, kind: object, *rest: object) -> None:
        try:
            self.db.execute("COMMIT" if kind is None else "ROLLBACK")
        finally:
            fcntl.flock(self.gate, fcntl.LOCK_UN)


def _entry(row: tuple[Any, ...]) -> dict[str, Any]:
    entry = dict(zip(FIELDS, row, strict=True))
    entry["params"] = json.loads(entry["params"])
    return entry


def _shown(entry: dict[str, Any], now: float) -> dict[str, Any]:
    """A lapsed lease is shown as what it is: pending again (the next claim makes it so)."""
    if entry["state"] == "running" and (entry["lease_until"] or 0) < now:
        entry |= {"state": "pending", "worker": None, "lease_until": None}
    return entry


def _create_private(path: str) -> None:
    """The store's file made by us, 0600, never through a symlink (as the history store's)."""
    os.close(safefs.open_private(path, os.O_RDWR | os.O_CREAT))
    for side in (path + "-wal", path + "-shm"):
        if os.path.islink(side):
            raise safefs.symlink_error(side)
