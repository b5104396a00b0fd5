"""Run history in `state_dir/history.sqlite3` (SQLite, WAL): one row per run.

A row is written when the run starts (status `running`) and finished when it ends, so
a run whose runjob died stays `running` in the table; readers show it as `crashed` once
its runjob is gone from this host: the row keeps the pid and its start time (procid.py),
so an unrelated process that got the same pid is never taken for the run.

The `running` rows also back up the lock: a run that took a lock file a tmp cleaner
re-created under a live holder finds the holder's row and stands back (`start`).

The schema carries a version (PRAGMA user_version) and migrations; old rows are purged
on write, a bounded batch at a time.

The WAL is kept between runs: a run never closes its connection (the launcher ends with
os._exit), so SQLite's checkpoint-on-close, with its fsyncs and the unlink of the -wal and
-shm files, does not happen on every run. This is safe: with synchronous=NORMAL a commit
has been written to the -wal file (in the kernel's page cache) before COMMIT returns, so a
run's rows survive runjob being killed or exiting at any later point, and every reader sees
them. Only a power loss before the next checkpoint can lose the newest commits (never
corrupt the file: WAL frames are checksummed); SQLite checkpoints on its own once the WAL
holds WAL_CHECKPOINT_PAGES pages, and journal_size_limit then cuts the file back.
"""

from __future__ import annotations

import os
import time

from runjob import safefs
from runjob.errors import InternalError
from runjob.locks.lock import Busy, exclusive
from runjob.proc import procid
from runjob.records.logs import encode, timestamp
from runjob.run.model import Observer
from runjob.store import history_pending

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3
    from typing import Any

    from runjob.run.model import Outcome, Run
else:
    try:  # the C module: the sqlite3 package adds only datetime adapters, and importing datetime
        # costs ~3 ms of every run's start-up here (timestamps are stored as floats)
        import _sqlite3 as sqlite3
    except ImportError:  # pragma: no cover
        import sqlite3

FILENAME = "history.sqlite3"
BUSY_TIMEOUT_MS = 30_000  # 20+ concurrent runs wait for each other rather than fail
WAL_LIMIT = 1 << 20  # bytes the -wal file is cut back to after a checkpoint (else it keeps its peak size)
# A run ends with os._exit, never closing its connection, so the next one to open the store
# rebuilds the WAL index by reading every valid frame (WAL recovery): at SQLite's default of
# 1,000 pages that was ~850 reads per run. A checkpoint every 64 pages (about every 20 runs,
# one fsync) keeps that to a few dozen reads.
WAL_CHECKPOINT_PAGES = 64
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
    # version 2: the pid's start time (a reused pid is not the run), running rows by lock key
    """
    ALTER TABLE runs ADD COLUMN pid_start INTEGER;
    CREATE INDEX runs_lock_status ON runs (lock_key, status);
    """,
    # version 3: pipeline runs and, per pipeline run, each job's latest run (pipeline_store.py)
    """
    CREATE TABLE pipeline_runs (
        id INTEGER PRIMARY KEY,
        pipeline_run_id TEXT NOT NULL UNIQUE,
        pipeline TEXT NOT NULL,
        params TEXT NOT NULL DEFAULT '{}',
        correlation_id TEXT,
        host TEXT,
        pid INTEGER,
        pid_start INTEGER,
        started REAL NOT NULL,
        ended REAL,
        status TEXT NOT NULL,
        exit_code INTEGER,
        failed_jobs TEXT NOT NULL DEFAULT '[]'
    );
    CREATE INDEX pipeline_runs_pipeline_started ON pipeline_runs (pipeline, started);
    CREATE TABLE pipeline_jobs (
        pipeline_run_id TEXT NOT NULL,
        stage INTEGER NOT NULL,
        job TEXT NOT NULL,
        run_id TEXT,
        status TEXT NOT NULL,
        exit_code INTEGER,
        PRIMARY KEY (pipeline_run_id, job)
    );
    """,
]
COLUMNS = (
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


def connect(state_dir: str) -> sqlite3.Connection:
    """An open, migrated history store; InternalError (exit 125) naming the file if not."""
    path = path_in(state_dir)
    try:
        _create_private(state_dir, path)
        db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT}")  # per connection: set on every open
        db.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
        if _scalar(db, "PRAGMA user_version") != len(MIGRATIONS):
            _set_up(db, state_dir)
        history_pending.fold(db, state_dir)  # run ends an earlier connection could not write
        return db
    except sqlite3.DatabaseError as e:
        raise InternalError(f"history store {path} is unusable: {e} (move it aside to start afresh)") from None
    except OSError as e:
        raise InternalError(f"cannot create history store {path}: {e.strerror}") from None


def _create_private(state_dir: str, path: str) -> None:
    """The store's file made by us, 0600, never through a symlink: SQLite gives its -wal and
    -shm files the same mode. The checked state dir means nobody else can plant them."""
    safefs.ensure_dir(state_dir, top=True)
    os.close(safefs.open_private(path, os.O_RDWR | os.O_CREAT))
    for side in (path + "-wal", path + "-shm"):
        if os.path.islink(side):
            raise safefs.symlink_error(side)


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
        """The `running` row, unless a live run on this host holds the lock key (Busy): one
        transaction, so of two runs that each got a lock file (a cleaner removed the first's)
        the second to write sees the first."""
        db = self._db()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                other = self._live_holder(db, run)
                if other is None:
                    self._insert(run, status="running")
            finally:
                db.execute("COMMIT")
        except sqlite3.Error as e:
            raise InternalError(f"cannot write history {path_in(self.state_dir)}: {e}") from None
        if other is not None:
            raise Busy(other)

    def _live_holder(self, db: sqlite3.Connection, run: Run) -> dict[str, Any] | None:
        rows = db.execute(
            "SELECT run_id, job, pid, pid_start, started FROM runs WHERE lock_key = ? AND status = 'running' "
            "AND host = ?",
            (run.plan.redact(run.plan.lock_key), run.records.common["host"]),
        ).fetchall()
        for run_id, job, pid, pid_start, started in rows:
            if pid != os.getpid() and procid.alive(pid, pid_start):
                return {"pid": pid, "pid_start": pid_start, "run_id": run_id, "job": job, "since": timestamp(started)}
        return None

    def skipped(self, run: Run, holder: dict[str, Any]) -> None:
        self._insert(run, status="skipped", ended=run.started, duration_s=0.0)

    def end(self, run: Run, outcome: Outcome) -> None:
        db = self._db()
        ended = {
            "ended": outcome.ended,
            "status": outcome.status,
            "exit_code": outcome.exit_code,
            "attempts": outcome.attempts,
            "duration_s": round(outcome.duration, 3),
            "stderr_tail": outcome.stderr_tail,
            "max_rss_kb": outcome.max_rss_kb,
        }
        try:
            updated = db.execute(
                f"UPDATE runs SET {', '.join(f'{k}=?' for k in ended)} WHERE run_id=?", (*ended.values(), run.run_id)
            ).rowcount
            if not updated:  # a run that ended before it started (a signal while waiting for its lock)
                self._insert(run, **ended)
        except (sqlite3.Error, InternalError) as e:
            # The run did end: keep its row for the next connection, never leave it `running`.
            history_pending.keep(self.state_dir, self._row(run) | ended)
            raise InternalError(
                f"cannot write history {path_in(self.state_dir)}: {e}; the run's end is kept in "
                f"{history_pending.path_in(self.state_dir)} until the store takes it"
            ) from None
        try:
            self._purge(db)
        except sqlite3.Error:
            pass  # purging is housekeeping: the next run's end tries again

    def _row(self, run: Run) -> dict[str, Any]:
        plan = run.plan
        return {
            "run_id": run.run_id,
            "job": plan.name,
            "params": encode(plan.params),
            "correlation_id": run.correlation_id,
            "host": run.records.common["host"],
            "pid": os.getpid(),
            "pid_start": procid.start_time(os.getpid()),
            "lock_key": plan.redact(plan.lock_key),
            "started": run.started,
        }

    def _insert(self, run: Run, **fields: Any) -> None:
        row = self._row(run) | fields
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


def row_dict(row: sqlite3.Row | tuple[Any, ...], host: str) -> dict[str, Any]:
    """A history row for output: params decoded, a dead `running` run shown as `crashed`."""
    from runjob.records import jsonout

    out = dict(zip(COLUMNS, row, strict=True))
    out["params"] = jsonout.loads(out["params"] or "{}")
    if out["status"] == "running" and out["host"] == host and not procid.alive(out["pid"], out["pid_start"]):
        out["status"] = "crashed"
    return out


def query(
    db: sqlite3.Connection,
    job: str | None = None,
    status: str | None = None,
    since: float | None = None,
    limit: int = 50,
) -> list[tuple[Any, ...]]:
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


def last_runs(
    db: sqlite3.Connection, job: str, params: str | None = None
) -> tuple[tuple[Any, ...] | None, tuple[Any, ...] | None]:
    """(the newest run that was not skipped, the newest success) of `job`, or of one of its
    instances (`params` as stored: see param_sets); both index look-ups."""
    cols = ", ".join(COLUMNS)
    one = "" if params is None else " AND params = ?"
    args = (job,) if params is None else (job, params)
    found = [
        db.execute(
            f"SELECT {cols} FROM runs WHERE job = ?{one} AND {where} ORDER BY started DESC LIMIT 1", args
        ).fetchall()
        for where in ("status != 'skipped'", "status = 'success'")
    ]  # fetchall: a finished statement holds no lock (see _scalar)
    return tuple(rows[0] if rows else None for rows in found)  # type: ignore[return-value]


def param_sets(db: sqlite3.Connection, job: str) -> dict[str, dict[str, str]]:
    """Every param set `job` has run with: the stored text -> the params."""
    import json

    rows = db.execute("SELECT DISTINCT params FROM runs WHERE job = ?", (job,)).fetchall()
    return {text: json.loads(text or "{}") for (text,) in rows}
