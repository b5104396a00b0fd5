"""One scheduled run: a job and the params it runs with (one per instance of the job)."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from runjob.registry.config import Job


class Entry:
    """One scheduled run: a job and the params it runs with.

    `words` and `slug` are worked out when asked for: `tick` makes an entry for each of
    10,000 jobs and needs them only for the few that are due.
    """

    __slots__ = ("job", "params")

    def __init__(self, job: Job, params: dict[str, str]) -> None:
        self.job = job
        self.params = params

    @property
    def words(self) -> list[str]:
        """`NAME k=v ...`: the run as `runjob` takes it."""
        return [self.job.name] + [f"{k}={v}" for k, v in self.params.items()]

    @property
    def slug(self) -> str:
        """For unit and object names (export.names)."""
        return "-".join([self.job.name, *self.params.values()])


def entries_of(job: Job) -> list[Entry]:
    return [Entry(job, dict(params)) for params in (job.instances or [{}])]
