"""One scheduled run: a job and the params it runs with (one per instance of the job)."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from runjob.registry.config import Job


class Entry:
    """One scheduled run: a job and the params it runs with."""

    def __init__(self, job: Job, params: dict[str, str]) -> None:
        self.job = job
        self.params = params
        self.words = [job.name] + [f"{k}={v}" for k, v in params.items()]
        self.slug = "-".join([job.name, *params.values()])  # for unit and object names (export.names)


def entries_of(job: Job) -> list[Entry]:
    return [Entry(job, dict(params)) for params in (job.instances or [{}])]
