"""What is scheduled: every enabled job with a schedule that can be due, once per instance (param set).

Shared by `tick` and the exporters, so a crontab line, a systemd timer, a CronJob and a
tick-started run all mean the same `runjob NAME k=v ...`. A pipeline with a schedule is
one entry too: `runjob NAME` runs the whole pipeline.
"""

from __future__ import annotations

from runjob.schedule.entry import Entry, entries_of
from runjob.triggers import timers

TYPE_CHECKING = False
if TYPE_CHECKING:
    from datetime import datetime
    from typing import Any

    from runjob.registry.config import Job, Registry


def entries(registry: Registry) -> list[Entry]:
    """Every entry that can be due: enabled, with a schedule that is not `@manual`."""
    from runjob.schedule.due import is_active

    out = []
    for job in [*registry.jobs.values(), *registry.pipelines.values()]:
        if is_active(job):
            out += entries_of(job)
    return out


def disabled(registry: Registry) -> list[Entry]:
    """The entries `enabled = false` keeps from being due (crontab shows them as comments)."""
    out = []
    for job in [*registry.jobs.values(), *registry.pipelines.values()]:
        if job.schedule and not job.enabled and timers.kind(job.schedule) != timers.MANUAL:
            out += entries_of(job)
    return out


def next_times(job: Job, now: datetime, count: int, state_dir: str | None = None) -> list[datetime]:
    """The job's next `count` due times after `now` (none when it is never due)."""
    from runjob.schedule import due
    from runjob.triggers import cron

    what = timers.kind(job.schedule)
    if what is None or not job.enabled or what == timers.MANUAL:
        return []
    if what != timers.CRON:
        return due.next_times(job, now, count, state_dir)
    return cron.next_times(job.schedule or "", job.timezone, now, count)


def schedule_state(job: Job, state_dir: str | None) -> dict[str, Any]:
    """`enabled`, and for a one-time job `done` (a run at or after its moment succeeded)."""
    from runjob.registry.config import Pipeline

    out: dict[str, Any] = {"enabled": job.enabled}
    if timers.kind(job.schedule) == timers.AT:  # status and list load due.py (json, the store) only then
        from runjob.schedule import due

        out["done"] = state_dir is not None and due.done(job, state_dir)
    if isinstance(job, Pipeline):
        out |= {"pipeline": True, "stages": job.stages, "params": sorted(job.pass_params)}
    return out
