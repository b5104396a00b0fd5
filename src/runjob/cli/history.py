"""`runjob history`, `runjob status`, `runjob stale` and `runjob locks`."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

from runjob.cli import answer
from runjob.errors import UsageError
from runjob.ops import watchdog
from runjob.records import jsonout
from runjob.records.logs import JsonSink, Records, new_run_id, timestamp
from runjob.registry import config, loader
from runjob.run.model import ROW_STATUSES
from runjob.schedule.scheduled import schedule_state
from runjob.store import history

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3
    from typing import Any


def _open(state_dir: str) -> sqlite3.Connection | None:
    """The history store, or None when no run has written one yet."""
    if not os.path.exists(history.path_in(state_dir)):
        return None
    return history.connect(state_dir)


def _times(row: dict[str, Any]) -> dict[str, Any]:
    for key in ("started", "ended"):
        value = row.pop(key)
        row[f"{key}_at"] = timestamp(value) if value else None
    return row


def show_history(
    config_path: str | None, job: str | None, limit: int, status: str | None, since: str | None, as_json: bool
) -> int:
    registry = loader.load(config_path, cached=True)
    if job is not None and job in registry.pipelines:
        return _pipeline_history(registry, job, limit, as_json)
    if job is not None:
        registry.job(job)
    if status is not None and status not in ROW_STATUSES:
        raise UsageError(f'--status must be one of {", ".join(ROW_STATUSES)}, got "{status}"')
    if limit < 1:
        raise UsageError("--limit must be at least 1")
    db = _open(registry.state_dir)
    rows = _rows(db, job, status, _since(since), limit) if db else []
    return answer.show(rows, as_json, "history_table")


def _pipeline_history(registry: config.Registry, name: str, limit: int, as_json: bool) -> int:
    """`runjob history PIPELINE`: its runs, newest first, each with its jobs' latest runs."""
    from runjob.pipeline.store import runs

    if limit < 1:
        raise UsageError("--limit must be at least 1")
    db = _open(registry.state_dir)
    rows = runs(db, name, limit) if db else []
    if as_json:
        print(jsonout.dumps(rows))
    else:
        for r in rows:
            jobs = ", ".join(f"{j['job']} {j['status']}" for j in r["jobs"])
            print(f"{(r['started_at'] or '')[:19]}  {r['status']:<8} {r['pipeline_run_id']}  {jobs}")
    return 0


def _rows(
    db: sqlite3.Connection, job: str | None, status: str | None, since: float | None, limit: int
) -> list[dict[str, Any]]:
    host = os.uname().nodename
    rows = [history.row_dict(r, host) for r in history.query(db, job, status, since, limit)]
    if status in ("running", "crashed"):
        rows = [r for r in rows if r["status"] == status]
    return [_times(r) for r in rows]


def _since(text: str | None) -> float | None:
    if text is None:  # durations (and its `re`) stay unloaded
        return None
    from runjob.registry.durations import flag

    return time.time() - (flag(text, "--since") or 0.0)


def show_status(config_path: str | None, as_json: bool, at: float | None = None) -> int:
    registry = loader.load(config_path, check_schedules=True, cached=True)
    db = _open(registry.state_dir)
    now = time.time()
    seen = _Seen(registry, db, watchdog.held_locks(registry), now, at)
    rows = [
        _job_status(seen, name, params, text)
        for name, job in registry.jobs.items()
        for params, text in watchdog.instances(job, db)
    ]
    if registry.pipelines:
        from runjob.pipeline.store import pipeline_status

        rows += [pipeline_status(registry, p, db, now if at is None else at) for p in registry.pipelines.values()]
    workers: list[dict[str, Any]] = []
    if registry.workers:
        from runjob.supervisor.state import print_workers, worker_rows

        workers = worker_rows(registry)
    if as_json:
        print(jsonout.dumps(rows + workers))  # a worker's row has "worker" where a job's has "job"
    else:
        from runjob.cli.pretty import status_table

        status_table(rows)
        if workers:
            print_workers(workers)
    return 0


class _Seen:
    """What every row of `status` is seen from: the registry, its history, the locks held now,
    now, and `--at` (the instant next due times are seen from, if given)."""

    __slots__ = ("registry", "db", "held", "now", "at")

    def __init__(
        self,
        registry: config.Registry,
        db: sqlite3.Connection | None,
        held: list[dict[str, Any]],
        now: float,
        at: float | None,
    ) -> None:
        self.registry, self.db, self.held, self.now, self.at = registry, db, held, now, at


def _job_status(seen: _Seen, name: str, params: dict[str, str], text: str | None) -> dict[str, Any]:
    """One row per job instance (see watchdog.instances): its own last run, success, stale flag and locks."""
    registry, db, held, now, at = seen.registry, seen.db, seen.held, seen.now, seen.at
    job = registry.jobs[name]
    host = os.uname().nodename
    last, success = history.last_runs(db, name, text) if db and text != "" else (None, None)
    last_row = history.row_dict(last, host) if last else None
    success_row = history.row_dict(success, host) if success else None
    from runjob.schedule.scheduled import next_times

    seen_from = datetime.fromtimestamp(now if at is None else at, UTC)  # --at: seen from then
    due = next_times(job, seen_from, 1, registry.state_dir)
    stale = watchdog.staleness(job, success_row["ended"] if success_row else None, now)
    return (
        {
            "job": name,
            "params": params,
            "last_run_at": timestamp(last_row["started"]) if last_row else None,
            "status": last_row["status"] if last_row else None,
            "exit_code": last_row["exit_code"] if last_row else None,
            "duration_s": last_row["duration_s"] if last_row else None,
            "last_success_at": timestamp(success_row["ended"]) if success_row else None,
            "next_due": timestamp(due[0].timestamp()) if due else None,
            "stale": None if job.max_age is None else stale is not None,
            "locks": watchdog.held_by(job, held, params),
        }
        | schedule_state(job, registry.state_dir)
        | _last_claim(job)
    )


def _last_claim(job: config.Job) -> dict[str, Any]:
    """For a Redis-backed scheduled job: the last occurrence a fleet's tick claimed, and by which host and run."""
    if not (job.lock_backend and job.schedule):
        return {}
    from runjob.schedule import claims

    return {"last_claim": claims.last_claim(job.lock_backend, job.lock_password_env, job.name)}


def check_stale(config_path: str | None, notify: bool, pretty: bool) -> int:
    registry = loader.load(config_path)
    db = _open(registry.state_dir)
    found = watchdog.stale_jobs(registry, db, time.time())
    sink = JsonSink()
    for job, params, why in found:
        records = Records(sink, job.name, new_run_id(), os.environ.get("RUNJOB_CORRELATION_ID"))
        fields = why | {"last_success_at": timestamp(why["last_success_at"]) if why["last_success_at"] else None}
        which = " ".join([job.name, *(f"{k}={v}" for k, v in params.items())])
        record = records.emit(
            "job.stale", f"{which} is stale: {why['reason']}", level="error", owners=job.owners, params=params, **fields
        )
        if notify:
            from runjob.ops import notify as notifier

            notifier.finish(notifier.start(registry, job, "stale", record), records)
    if pretty and not found:
        print("no stale jobs")
    return 1 if found else 0


def show_locks(config_path: str | None, as_json: bool) -> int:
    registry = loader.load(config_path)
    return answer.show(watchdog.held_locks(registry), as_json, "locks_table")
