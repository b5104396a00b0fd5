"""Run history in `state_dir/history.sqlite3` (SQLite, WAL): one row per run.

A row is written when the run starts (status `running`) and finished when it ends, so
a run whose runjob died stays `running` in the table; readers show it as `crashed` once
its runjob is gone from this host: the row keeps the pid and its start time (procid.py),
so an unrelated process that got the same pid is never taken for the run.

The `running` rows also back up the lock: a run that took a lock file a tmp cleaner
re-created under a live holder finds the holder's row and stands back (`start`).

The schema carries a version (PRAGMA user_version) and migrations (history_schema.py);
old rows are purged on write, a bounded batch at a time. `run_latest` (kept by triggers)
names each job instance's newest run and newest success, so `status` and `stale` look
up a few rows whatever the size of the table.

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
from runjob.proc import procid
from runjob.records.logs import encode, timestamp
from runjob.run.model import Observer

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
PENDING = "history.pending"  # history_pending.FILENAME; that module is loaded only when the file is there
BUSY_TIMEOUT_MS = 30_000  # 20+ concurrent runs wait for each other rather than fail
WAL_LIMIT = 1 << 20  # bytes the -wal file is cut back to after a checkpoint (else it keeps its peak size)
# A run ends with os._exit, never closing its connection, so the next one to open the store
# rebuilds the WAL index by reading every valid frame (WAL recovery): at SQLite's default of
# 1,000 pages that was ~850 reads per run. A checkpoint every 64 pages (about every 20 runs,
# one fsync) keeps that to a few dozen reads.
WAL_CHECKPOINT_PAGES = 64
PURGE_BATCH = 500
# len(history_schema.MIGRATIONS), written out: that module is loaded only to migrate, never by a run
SCHEMA_VERSION = 4

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
        if _scalar(db, "PRAGMA user_version") != SCHEMA_VERSION:
            _set_up(db, state_dir)
        if os.path.lexists(os.path.join(state_dir, PENDING)):  # the usual case: one lstat, nothing to import
            from runjob.store import history_pending

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
    from runjob.locks.lock import exclusive

    # A migration rebuilds summaries over every row (schema 4's run_latest: seconds on a
    # history of millions): runs that open the store meanwhile wait for it, as they wait
    # for SQLite's own write lock, rather than fail after the short set-up wait.
    with exclusive(os.path.join(state_dir, FILENAME + ".setup.lock"), wait_s=BUSY_TIMEOUT_MS / 1000):
        if _scalar(db, "PRAGMA journal_mode") != "wal":
            _scalar(db, "PRAGMA journal_mode = WAL")
        from runjob.store import history_schema

        history_schema.migrate(db)


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
            from runjob.locks.lock import Busy  # loaded already: the run holds its lock

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
            from runjob.store import history_pending

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
    instances (`params` as stored: see param_sets): run_latest's rows by key, then those rows."""
    pair = "" if params is None else " AND params = ?"
    args = (job,) if params is None else (job, params)
    found = []
    for column in ("last", "success"):
        rows = db.execute(
            f"SELECT {', '.join(COLUMNS)} FROM runs WHERE id = (SELECT {column}_id FROM run_latest "
            f"WHERE job = ?{pair} ORDER BY {column}_started DESC LIMIT 1)",
            args,
        ).fetchall()  # fetchall: a finished statement holds no lock (see _scalar)
        found.append(rows[0] if rows else None)
    return found[0], found[1]


def latest_runs(db: sqlite3.Connection) -> dict[str, dict[str, tuple[tuple[Any, ...] | None, tuple[Any, ...] | None]]]:
    """job -> {params as stored -> (its newest run that was not skipped, its newest success)}:
    all of run_latest with its rows, in one query (`status` asks for every instance)."""
    both = ", ".join(f"{alias}.{c}" for alias in ("a", "s") for c in COLUMNS)
    rows = db.execute(
        f"SELECT l.job, l.params, {both} FROM run_latest l "
        "LEFT JOIN runs a ON a.id = l.last_id LEFT JOIN runs s ON s.id = l.success_id"
    ).fetchall()
    width = len(COLUMNS)
    out: dict[str, dict[str, tuple[tuple[Any, ...] | None, tuple[Any, ...] | None]]] = {}
    for row in rows:
        last, success = row[2 : 2 + width], row[2 + width :]
        out.setdefault(row[0], {})[row[1]] = (last if last[0] else None, success if success[0] else None)
    return out


def newest(
    pairs: dict[str, tuple[tuple[Any, ...] | None, tuple[Any, ...] | None]], params: str | None
) -> tuple[tuple[Any, ...] | None, tuple[Any, ...] | None]:
    """What last_runs answers, from one job's latest_runs: one instance's, or (params None) the job's."""
    if params is not None:
        return pairs.get(params, (None, None))
    started = COLUMNS.index("started")
    found = []
    for kind in (0, 1):
        rows = [pair[kind] for pair in pairs.values() if pair[kind] is not None]
        found.append(max(rows, key=lambda row: row[started]) if rows else None)  # type: ignore[index]
    return found[0], found[1]


def param_sets(db: sqlite3.Connection, job: str) -> dict[str, dict[str, str]]:
    """Every param set `job` has a run with in the store: the stored text -> the params."""
    from runjob.records import jsonout  # not json: its import compiles regexes

    rows = db.execute("SELECT params FROM run_latest WHERE job = ?", (job,)).fetchall()
    return {text: jsonout.loads(text or "{}") for (text,) in rows}
