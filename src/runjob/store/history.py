"""Run history in `state_dir/history.sqlite3` (SQLite, WAL): one row per run, for its readers.

Runs do not write here: they append their rows to the journal (journal.py, recorder.py),
and every connection first folds the journal in (history_fold.py), so a reader always
sees every run that has started. A run's `running` row is folded like any other, so a
run whose runjob died stays `running` in the table; readers show it as `crashed` once
its runjob is gone from this host: the row keeps the pid and its start time (procid.py),
so an unrelated process that got the same pid is never taken for the run.

The schema carries a version (PRAGMA user_version) and migrations (history_schema.py);
old rows are purged when folded, a bounded batch at a time. `run_latest` (kept by
triggers) names each job instance's newest run and newest success, so `status` and
`stale` look up a few rows whatever the size of the table.

The WAL is kept between connections: the launcher ends with os._exit, so SQLite's
checkpoint-on-close, with its fsyncs and the unlink of the -wal and -shm files, does not
happen on every reader's exit. With synchronous=NORMAL a commit is in the -wal file (the
kernel's page cache) before COMMIT returns; only a power loss before the next checkpoint
can lose the newest commits (never corrupt the file: WAL frames are checksummed). SQLite
checkpoints once the WAL holds WAL_CHECKPOINT_PAGES pages, and a fold empties a WAL that
grew past 256 KiB (history_fold.py).
"""

from __future__ import annotations

import os

from runjob import safefs
from runjob.errors import InternalError
from runjob.proc import procid
from runjob.store import journal
from runjob.store.journal import COLUMNS as COLUMNS  # re-exported: readers name the columns from here

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3
    from typing import Any
else:
    try:  # the C module: the sqlite3 package adds only datetime adapters, and importing datetime
        # costs ~3 ms of every run's start-up here (timestamps are stored as floats)
        import _sqlite3 as sqlite3
    except ImportError:  # pragma: no cover
        import sqlite3

FILENAME = "history.sqlite3"
BUSY_TIMEOUT_MS = 30_000  # 20+ concurrent runs wait for each other rather than fail
WAL_LIMIT = 1 << 20  # bytes the -wal file is cut back to after a checkpoint (else it keeps its peak size)
# Readers end with os._exit, never closing their connection, so the next one to open the
# store rebuilds the WAL index by reading every valid frame (WAL recovery). SQLite checkpoints
# every 64 pages, and a fold empties a WAL past 256 KiB (history_fold._checkpoint_big_wal).
WAL_CHECKPOINT_PAGES = 64
PURGE_BATCH = 500
# len(history_schema.MIGRATIONS), written out: that module is loaded only to migrate, never by a run
SCHEMA_VERSION = 4


def path_in(state_dir: str) -> str:
    return os.path.join(state_dir, FILENAME)


def exists(state_dir: str) -> bool:
    """Has any run written history here (the store, or a journal not folded yet)?"""
    return os.path.exists(path_in(state_dir)) or os.path.exists(journal.path_in(state_dir))


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
        if journal.has_lines(state_dir):  # the usual case right after another reader: two lstats
            from runjob.store import history_fold

            history_fold.fold(db, state_dir, path + "-wal")  # the rows runs wrote since the last reader
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
