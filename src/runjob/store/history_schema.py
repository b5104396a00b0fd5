"""The history store's schema: its migrations, applied in order, one transaction each.

The version is PRAGMA user_version. Every migration runs under BEGIN IMMEDIATE and checks
the version again inside it, so runs that open an old store at the same time migrate it
once; a store from a newer runjob is refused.

Version 4 adds `run_latest`: per job and param set, the newest run that was not skipped
and the newest success, kept by triggers on `runs`. `status`, `stale` and the metrics ask
for exactly these rows, and without it `status` ran a DISTINCT over all of a job's rows
to find its param sets. Triggers, not the writer, keep it: every way a row gets in (a
run's start and end folded in from the journal, a row an operator inserts by hand) and
out (the purge) keeps the summary true, and a fold pays one small keyed write per row
write, in the same transaction (no extra fsync).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3
    from typing import Any
else:
    try:  # the C module, as in history.py
        import _sqlite3 as sqlite3
    except ImportError:  # pragma: no cover
        import sqlite3

# The newest qualifying row of the pair (job, params) of `old`, both kinds, recomputed through
# the (job, started) and (job, status, started) indexes; a pair with no row left goes.
_RECOMPUTE = """
    UPDATE run_latest SET
        (last_id, last_started) = (SELECT id, started FROM runs WHERE job = old.job AND params = old.params
            AND status != 'skipped' ORDER BY started DESC, id DESC LIMIT 1),
        (success_id, success_started) = (SELECT id, started FROM runs WHERE job = old.job AND params = old.params
            AND status = 'success' ORDER BY started DESC, id DESC LIMIT 1)
        WHERE job = old.job AND params = old.params;
    DELETE FROM run_latest WHERE job = old.job AND params = old.params
        AND NOT EXISTS (SELECT 1 FROM runs WHERE job = old.job AND params = old.params);
"""
# `new` is the newest of its pair if nothing newer is known (a tie goes to the later write).
_ADVANCE = """
    INSERT INTO run_latest (job, params) VALUES (new.job, new.params) ON CONFLICT DO NOTHING;
    UPDATE run_latest SET last_id = new.id, last_started = new.started
        WHERE job = new.job AND params = new.params AND new.status != 'skipped'
        AND (last_started IS NULL OR last_started <= new.started);
    UPDATE run_latest SET success_id = new.id, success_started = new.started
        WHERE job = new.job AND params = new.params AND new.status = 'success'
        AND (success_started IS NULL OR success_started <= new.started);
"""

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
    # version 4: per job and param set, its newest run and newest success (see above)
    f"""
    CREATE TABLE run_latest (
        job TEXT NOT NULL,
        params TEXT NOT NULL,
        last_id INTEGER,
        last_started REAL,
        success_id INTEGER,
        success_started REAL,
        PRIMARY KEY (job, params)
    ) WITHOUT ROWID;
    INSERT INTO run_latest (job, params) SELECT DISTINCT job, params FROM runs;
    INSERT INTO run_latest (job, params, last_id, last_started)
        SELECT job, params, id, MAX(started) FROM runs WHERE status != 'skipped' GROUP BY job, params
        ON CONFLICT (job, params) DO UPDATE SET last_id = excluded.last_id, last_started = excluded.last_started;
    INSERT INTO run_latest (job, params, success_id, success_started)
        SELECT job, params, id, MAX(started) FROM runs WHERE status = 'success' GROUP BY job, params
        ON CONFLICT (job, params) DO UPDATE SET
            success_id = excluded.success_id, success_started = excluded.success_started;
    CREATE TRIGGER run_latest_insert AFTER INSERT ON runs BEGIN {_ADVANCE} END;
    CREATE TRIGGER run_latest_update AFTER UPDATE ON runs BEGIN {_ADVANCE} END;
    CREATE TRIGGER run_latest_change AFTER UPDATE ON runs
        WHEN old.job IS NOT new.job OR old.params IS NOT new.params OR old.started IS NOT new.started
            OR (old.status = 'success' AND new.status IS NOT 'success')
            OR (new.status = 'skipped' AND old.status IS NOT 'skipped')
        BEGIN {_RECOMPUTE} END;
    CREATE TRIGGER run_latest_delete AFTER DELETE ON runs
        WHEN EXISTS (SELECT 1 FROM run_latest WHERE job = old.job AND params = old.params
            AND (last_id = old.id OR success_id = old.id OR last_id IS NULL))
        BEGIN {_RECOMPUTE} END;
    """,
]
VERSION = len(MIGRATIONS)


def _scalar(db: sqlite3.Connection, sql: str) -> Any:
    return db.execute(sql).fetchall()[0][0]  # fetchall: see history._scalar


def statements(script: str) -> list[str]:
    """The statements of `script`, a trigger's body (with its own `;`) kept whole."""
    out: list[str] = []
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                out.append(pending)
            pending = ""
    return out


def migrate(db: sqlite3.Connection) -> None:
    """Bring the store to VERSION; DatabaseError for a store newer than this runjob."""
    version = _scalar(db, "PRAGMA user_version")
    if version > VERSION:
        raise sqlite3.DatabaseError(f"schema version {version} is newer than this runjob knows ({VERSION})")
    for number in range(version, VERSION):
        db.execute("BEGIN IMMEDIATE")
        try:
            if _scalar(db, "PRAGMA user_version") == number:  # another runner may have done it
                for statement in statements(MIGRATIONS[number]):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {number + 1}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
