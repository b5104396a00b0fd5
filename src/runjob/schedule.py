"""What is scheduled: every job with a `schedule`, once per instance (param set).

Shared by `tick` and the exporters, so a crontab line, a systemd timer, a CronJob and a
tick-started run all mean the same `runjob NAME k=v ...`.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from datetime import datetime

    from runjob.config import Job, Registry


class Entry:
    """One scheduled run: a job and the params it runs with."""

    def __init__(self, job: Job, params: dict[str, str]) -> None:
        self.job = job
        self.params = params
        self.words = [job.name] + [f"{k}={v}" for k, v in params.items()]
        self.slug = "-".join([job.name, *params.values()])  # for unit and object names (export.names)


def entries(registry: Registry) -> list[Entry]:
    out = []
    for job in registry.jobs.values():
        if job.schedule:
            out += [Entry(job, dict(params)) for params in (job.instances or [{}])]
    return out


def next_times(job: Job, now: datetime, count: int) -> list[datetime]:
    """The job's next `count` due times after `now` (none without a schedule)."""
    from runjob import cron

    return cron.next_times(job.schedule, job.timezone, now, count) if job.schedule else []

