"""Pipeline runs in the history store (tables `pipeline_runs`, `pipeline_jobs`, migration 3).

One `pipeline_runs` row per pipeline run id (a resume continues the same row), and one
`pipeline_jobs` row per job of it holding that job's latest run: `runjob resume` reads
which jobs already succeeded and never runs them again.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from datetime import UTC

from runjob.errors import InternalError, UsageError
from runjob.proc import procid
from runjob.records.encoding import timestamp
from runjob.store import history

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from runjob.registry.config import Pipeline, Registry


class Store:
    """The pipeline tables of one state dir's history store."""

    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir
        self.db = history.connect(state_dir)

    def _write(self, sql: str, args: tuple[Any, ...]) -> None:
        try:
            self.db.execute(sql, args)
        except sqlite3.Error as e:
            raise InternalError(f"cannot write history {history.path_in(self.state_dir)}: {e}") from None

    def begin(self, run_id: str, pipeline: str, params: dict[str, str], correlation_id: str, host: str) -> None:
        """The `running` row; a resumed run's row is set running again (same id, first start kept)."""
        pid = os.getpid()
        self._write(
            "INSERT INTO pipeline_runs (pipeline_run_id, pipeline, params, correlation_id, host, pid, pid_start, "
            "started, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running') ON CONFLICT (pipeline_run_id) DO UPDATE "
            "SET status = 'running', ended = NULL, exit_code = NULL, host = excluded.host, pid = excluded.pid, "
            "pid_start = excluded.pid_start",
            (run_id, pipeline, json.dumps(params), correlation_id, host, pid, procid.start_time(pid), time.time()),
        )

    def job(self, run_id: str, stage: int, job: str, job_run_id: str | None, status: str, code: int | None) -> None:
        self._write(
            "INSERT INTO pipeline_jobs (pipeline_run_id, stage, job, run_id, status, exit_code) "
            "VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (pipeline_run_id, job) DO UPDATE SET run_id = excluded.run_id, status = excluded.status, "
            "exit_code = excluded.exit_code, stage = excluded.stage",
            (run_id, stage, job, job_run_id, status, code),
        )

    def end(self, run_id: str, status: str, code: int, failed: list[str], keep_s: float) -> None:
        self._write(
            "UPDATE pipeline_runs SET ended = ?, status = ?, exit_code = ?, failed_jobs = ? WHERE pipeline_run_id = ?",
            (time.time(), status, code, json.dumps(failed), run_id),
        )
        # Like the runs table: rows older than history_keep go, a bounded batch at a time.
        old = "SELECT pipeline_run_id FROM pipeline_runs WHERE started < ? ORDER BY started LIMIT ?"
        cutoff = (time.time() - keep_s, history.PURGE_BATCH)
        self._write(f"DELETE FROM pipeline_jobs WHERE pipeline_run_id IN ({old})", cutoff)
        self._write(f"DELETE FROM pipeline_runs WHERE pipeline_run_id IN ({old})", cutoff)

    def job_status(self, job_run_id: str) -> str | None:
        """The status a job's own run wrote to the runs table (None: it never got that far)."""
        rows = self.db.execute("SELECT status FROM runs WHERE run_id = ?", (job_run_id,)).fetchall()
        return rows[0][0] if rows else None

    def find(self, prefix: str) -> dict[str, Any]:
        """The pipeline run a (unique, 8+ character) id prefix names; UsageError when none or several."""
        if len(prefix) < 8:
            raise UsageError(f'pipeline run id "{prefix}": give at least 8 characters')
        rows = self.db.execute(
            "SELECT pipeline_run_id, pipeline, params, status FROM pipeline_runs "
            "WHERE pipeline_run_id LIKE ? || '%' LIMIT 2",
            (prefix,),
        ).fetchall()
        if len(rows) != 1:
            what = "no pipeline run" if not rows else "more than one pipeline run"
            raise UsageError(f'{what} has the id "{prefix}" in {history.path_in(self.state_dir)}')
        run_id, pipeline, params, status = rows[0]
        return {"pipeline_run_id": run_id, "pipeline": pipeline, "params": json.loads(params), "status": status}

    def succeeded(self, run_id: str) -> set[str]:
        rows = self.db.execute(
            "SELECT job FROM pipeline_jobs WHERE pipeline_run_id = ? AND status = 'success'", (run_id,)
        ).fetchall()
        return {row[0] for row in rows}

    def close(self) -> None:
        self.db.close()


def open_store(state_dir: str) -> Store | None:
    """The store for reading, or None when no run has written one yet."""
    return Store(state_dir) if history.exists(state_dir) else None


RUN_COLUMNS = (
    "pipeline_run_id",
    "pipeline",
    "params",
    "host",
    "pid",
    "pid_start",
    "started",
    "ended",
    "status",
    "exit_code",
    "failed_jobs",
)


def runs(db: sqlite3.Connection, pipeline: str, limit: int) -> list[dict[str, Any]]:
    """The newest runs of `pipeline`, each with its jobs, for `history` and `status`."""
    rows = db.execute(
        f"SELECT {', '.join(RUN_COLUMNS)} FROM pipeline_runs WHERE pipeline = ? ORDER BY started DESC LIMIT ?",
        (pipeline, limit),
    ).fetchall()
    out = []
    for row in rows:
        run = dict(zip(RUN_COLUMNS, row, strict=True))
        run["params"], run["failed_jobs"] = json.loads(run["params"]), json.loads(run["failed_jobs"])
        if (
            run["status"] == "running"
            and run["host"] == os.uname().nodename
            and not procid.alive(run["pid"], run["pid_start"])
        ):
            run["status"] = "crashed"
        jobs = db.execute(
            "SELECT stage, job, run_id, status, exit_code FROM pipeline_jobs WHERE pipeline_run_id = ? "
            "ORDER BY stage, job",
            (run["pipeline_run_id"],),
        ).fetchall()
        run["jobs"] = [dict(zip(("stage", "job", "run_id", "status", "exit_code"), j, strict=True)) for j in jobs]
        for name in ("started", "ended"):
            value = run.pop(name)
            run[f"{name}_at"] = timestamp(value) if value else None
        out.append(run)
    return out


def pipeline_status(registry: Registry, pipeline: Pipeline, db: sqlite3.Connection | None, at: float) -> dict[str, Any]:
    """`status` for a pipeline: its last run, and when it is due next."""
    from datetime import datetime

    from runjob.schedule.scheduled import next_times, schedule_state

    last = runs(db, pipeline.name, 1)[0] if db else None
    due = next_times(pipeline, datetime.fromtimestamp(at, UTC), 1, registry.state_dir)
    return {
        "job": pipeline.name,
        "last_run_at": last["started_at"] if last else None,
        "status": last["status"] if last else None,
        "exit_code": last["exit_code"] if last else None,
        "failed_jobs": last["failed_jobs"] if last else [],
        "duration_s": None,
        "last_success_at": None,
        "stale": None,
        "locks": [],  # a pipeline's jobs have their own rows
        "pipeline_run_id": last["pipeline_run_id"] if last else None,
        "next_due": timestamp(due[0].timestamp()) if due else None,
    } | schedule_state(pipeline, registry.state_dir)
