"""`runjob status`: per job instance its last run, last success, next due time, stale flag and locks.

An everyday command, answered without typer off a terminal, and often polled by
monitoring against a large history. So it reads a few rows by key whatever the size of
the store (one query over `run_latest`, history.latest_runs), and takes the next due times of cron
schedules from schedule/due_times.py: a call usually loads neither cronsim nor zoneinfo
nor datetime.
"""

from __future__ import annotations

import os
import time

from runjob.cli.history import open_store
from runjob.ops import watchdog
from runjob.records import jsonout
from runjob.records.encoding import timestamp
from runjob.registry import loader
from runjob.schedule.due_times import DueTimes
from runjob.schedule.scheduled import schedule_state
from runjob.store import history

HOST = os.uname().nodename  # a `running` row of this host whose runjob is gone is `crashed`

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from runjob.registry.config import Job, Registry


def show_status(config_path: str | None, as_json: bool, at: float | None = None) -> int:
    registry = loader.load(config_path, check_schedules=True, cached=True)
    db = open_store(registry.state_dir)
    due = DueTimes(registry.state_dir, keep=at is None)  # --at: seen from then, not kept
    latest = history.latest_runs(db) if db else {}
    seen = _Seen(registry, watchdog.held_locks(registry), time.time(), at, due)
    rows = [
        _job_status(seen, job, latest.get(job.name, {}), params, text)
        for job in registry.jobs.values()
        for params, text in watchdog.instances(job, db, latest.get(job.name, {}) if db else None)
    ]
    due.save()
    if registry.pipelines:
        from runjob.pipeline.store import pipeline_status

        seen_from = seen.now if at is None else at
        rows += [pipeline_status(registry, p, db, seen_from) for p in registry.pipelines.values()]
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
    """What every row of `status` is seen from: the registry, the locks held now, now, `--at`
    (the instant next due times are seen from, if given) and the kept due times."""

    __slots__ = ("at", "due_times", "held", "now", "registry")

    def __init__(
        self, registry: Registry, held: list[dict[str, Any]], now: float, at: float | None, due_times: DueTimes
    ) -> None:
        self.registry, self.held, self.now, self.at, self.due_times = registry, held, now, at, due_times


def _job_status(
    seen: _Seen,
    job: Job,
    latest: dict[str, tuple[tuple[Any, ...] | None, tuple[Any, ...] | None]],
    params: dict[str, str],
    text: str | None,
) -> dict[str, Any]:
    """One row per job instance (see watchdog.instances): its own last run, success, stale flag and
    locks; `latest` is the job's part of history.latest_runs."""
    registry, held, now, at, due_times = seen.registry, seen.held, seen.now, seen.at, seen.due_times
    host = HOST
    last, success = history.newest(latest, text) if text != "" else (None, None)
    last_row = history.row_dict(last, host) if last else None
    success_row = history.row_dict(success, host) if success else None
    due = due_times.next(job, now if at is None else at, 1)  # --at: seen from then
    stale = watchdog.staleness(job, success_row["ended"] if success_row else None, now)
    return (
        {
            "job": job.name,
            "params": params,
            "last_run_at": timestamp(last_row["started"]) if last_row else None,
            "status": last_row["status"] if last_row else None,
            "exit_code": last_row["exit_code"] if last_row else None,
            "duration_s": last_row["duration_s"] if last_row else None,
            "last_success_at": timestamp(success_row["ended"]) if success_row else None,
            "next_due": timestamp(due[0]) if due else None,
            "stale": None if job.max_age is None else stale is not None,
            "locks": watchdog.held_by(job, held, params),
        }
        | schedule_state(job, registry.state_dir)
        | _last_claim(job)
    )


def _last_claim(job: Job) -> dict[str, Any]:
    """For a Redis-backed scheduled job: the last occurrence a fleet's tick claimed, and by which host and run."""
    if not (job.lock_backend and job.schedule):
        return {}
    from runjob.schedule import claims

    return {"last_claim": claims.last_claim(job.lock_backend, job.lock_password_env, job.name)}
