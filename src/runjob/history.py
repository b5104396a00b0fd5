"""Run history in `state_dir/history.sqlite3` (SQLite, WAL): one row per run.

A row is written when the run starts (status `running`) and finished when it ends, so
a run whose runjob died stays `running` in the table; readers show it as `crashed` once
its pid is gone from this host. The schema carries a version (PRAGMA user_version) and
migrations; old rows are purged on write, a bounded batch at a time.
"""

from __future__ import annotations

import os
import sqlite3
import time

from runjob.errors import InternalError
from runjob.lock import exclusive
from runjob.logs import encode

from runjob.observer import Observer

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from runjob.runner import Outcome, Run

FILENAME = "history.sqlite3"
BUSY_TIMEOUT_MS = 30_000  # 20+ concurrent runs wait for each other rather than fail
PURGE_BATCH = 500

MIGRATIONS = [
    # version 1
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL UNIQUE,
        job TEXT NOT NULL,
        params TEXT NOT NULL DEFAULT '{}',
        correlation_id TEXT,
        host TEXT,
        pid INTEGER,
        lock_key TEXT,
        started REAL NOT NULL,
        ended REAL,
        status TEXT NOT NULL,
        exit_code INTEGER,
        attempts INTEGER,
        duration_s REAL,
        stderr_tail TEXT,
        max_rss_kb INTEGER
    );
    CREATE INDEX runs_job_started ON runs (job, started);
    CREATE INDEX runs_started ON runs (started);
    CREATE INDEX runs_job_status_started ON runs (job, status, started);
    """,
]
COLUMNS = ("run_id", "job", "params", "correlation_id", "host", "pid", "lock_key", "started", "ended", "status",
           "exit_code", "attempts", "duration_s", "stderr_tail", "max_rss_kb")  # fmt: skip


def path_in(state_dir: str) -> str:
    return os.path.join(state_dir, FILENAME)


def connect(state_dir: str) -> sqlite3.Connection:
    """An open, migrated history store; InternalError (exit 125) naming the file if not."""
    path = path_in(state_dir)
    try:
        os.makedirs(state_dir, exist_ok=True)
        db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA synchronous = NORMAL")
        if _scalar(db, "PRAGMA user_version") != len(MIGRATIONS):
            _set_up(db, state_dir)
        return db
    except sqlite3.DatabaseError as e:
        raise InternalError(f"history store {path} is unusable: {e} (move it aside to start afresh)") from None
    except OSError as e:
        raise InternalError(f"cannot create history store {path}: {e.strerror}") from None


def _scalar(db: sqlite3.Connection, sql: str) -> Any:
    """One value; fetchall() so the statement is done and holds no lock (a half-read
    statement keeps a shared lock, and SQLite answers a lock upgrade that could deadlock
    with SQLITE_BUSY at once, busy timeout or not)."""
    return db.execute(sql).fetchall()[0][0]


def _set_up(db: sqlite3.Connection, state_dir: str) -> None:
    """WAL mode and migrations, one process at a time (many runs may create the store at once)."""
    with exclusive(os.path.join(state_dir, FILENAME + ".setup.lock")):
        if _scalar(db, "PRAGMA journal_mode") != "wal":
            _scalar(db, "PRAGMA journal_mode = WAL")
        _migrate(db)


def _migrate(db: sqlite3.Connection) -> None:
    version = _scalar(db, "PRAGMA user_version")
    if version > len(MIGRATIONS):
        raise sqlite3.DatabaseError(f"schema version {version} is newer than this runjob knows ({len(MIGRATIONS)})")
    for number in range(version, len(MIGRATIONS)):
        db.execute("BEGIN IMMEDIATE")
        try:
            if _scalar(db, "PRAGMA user_version") == number:  # another runner may have done it
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {number + 1}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise


class History(Observer):
    """The runner observer that writes history rows."""

    def __init__(self, state_dir: str, keep_s: float) -> None:
        self.state_dir = state_dir
        self.keep_s = keep_s
        self.db: sqlite3.Connection | None = None

    def _db(self) -> sqlite3.Connection:
        if self.db is None:
            self.db = connect(self.state_dir)
        return self.db

    def start(self, run: Run) -> None:
        self._insert(run, "running")

    def skipped(self, run: Run, holder: dict[str, Any]) -> None:
        self._insert(run, "skipped", ended=run.started, duration_s=0.0)

    def end(self, run: Run, outcome: Outcome) -> None:
        db = self._db()
        try:
            db.execute(
                "UPDATE runs SET ended=?, status=?, exit_code=?, attempts=?, duration_s=?, stderr_tail=?, "
                "max_rss_kb=? WHERE run_id=?",
                (outcome.ended, outcome.status, outcome.exit_code, outcome.attempts, round(outcome.duration, 3),
                 outcome.stderr_tail, outcome.max_rss_kb, run.run_id),
            )  # fmt: skip
            self._purge(db)
        except sqlite3.Error as e:
            raise InternalError(f"cannot write history {path_in(self.state_dir)}: {e}") from None

    def _insert(self, run: Run, status: str, **extra: Any) -> None:
        plan = run.plan
        row = {"run_id": run.run_id, "job": plan.name, "params": encode(plan.params),
               "correlation_id": run.correlation_id, "host": run.records.common["host"], "pid": os.getpid(),
               "lock_key": plan.redact(plan.lock_key), "started": run.started, "status": status} | extra  # fmt: skip
        try:
            self._db().execute(
                f"INSERT INTO runs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", tuple(row.values())
            )
        except sqlite3.Error as e:
            raise InternalError(f"cannot write history {path_in(self.state_dir)}: {e}") from None

    def _purge(self, db: sqlite3.Connection) -> None:
        """Drop a bounded batch of rows older than history_keep (cheap: indexed, capped)."""
        cutoff = time.time() - self.keep_s
        db.execute(
            "DELETE FROM runs WHERE id IN (SELECT id FROM runs WHERE started < ? ORDER BY started LIMIT ?)",
            (cutoff, PURGE_BATCH),
        )

    def close(self) -> None:
        if self.db is not None:
            self.db.close()


def row_dict(row: sqlite3.Row | tuple[Any, ...], host: str) -> dict[str, Any]:
    """A history row for output: params decoded, a dead `running` run shown as `crashed`."""
    import json

    out = dict(zip(COLUMNS, row, strict=True))
    out["params"] = json.loads(out["params"] or "{}")
    if out["status"] == "running" and out["host"] == host and not _pid_alive(out["pid"]):
        out["status"] = "crashed"
    return out


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def query(db: sqlite3.Connection, job: str | None = None, status: str | None = None, since: float | None = None,
          limit: int = 50) -> list[tuple[Any, ...]]:  # fmt: skip
    where: list[str] = []
    args: list[Any] = []
    if job:
        where.append("job = ?")
        args.append(job)
    if status and status != "crashed":
        where.append("status = ?")
        args.append(status)
    elif status == "crashed":
        where.append("status = 'running'")
    if since is not None:
        where.append("started >= ?")
        args.append(since)
    sql = f"SELECT {', '.join(COLUMNS)} FROM runs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY started DESC LIMIT ?"
    return db.execute(sql, (*args, limit)).fetchall()


def last_runs(db: sqlite3.Connection, job: str) -> tuple[tuple[Any, ...] | None, tuple[Any, ...] | None]:
    """(the newest run that was not skipped, the newest success) of `job`; both index look-ups."""
    cols = ", ".join(COLUMNS)
    found = [
        db.execute(f"SELECT {cols} FROM runs WHERE job = ? AND {where} ORDER BY started DESC LIMIT 1", (job,)).fetchall()
        for where in ("status != 'skipped'", "status = 'success'")
    ]  # fetchall: a finished statement holds no lock (see _scalar)
    return tuple(rows[0] if rows else None for rows in found)  # type: ignore[return-value]
