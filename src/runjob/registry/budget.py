"""The longest a run may take by the job's own settings: the one source of a run's outer budget.

A scheduler that wraps runjob (systemd's TimeoutStartSec=, a CronJob's
activeDeadlineSeconds) must not kill a run that runjob itself would still let go on.
Pure arithmetic on the job: no imports, so the runner may use it on the hot path.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from runjob.registry.config import Job

# runjob's own start, records and after-run steps (history, notify, ping) on top of the run.
MARGIN_S = 30.0


def backoff_total(retry: dict[str, Any]) -> float:
    """The longest the waits between attempts add up to, as RetryState.next_delay gives them
    (jitter only shortens a wait)."""
    grow = 2 if retry["backoff"] == "exponential" else 1
    delays = (min(retry["delay"] * grow ** (n - 1), retry["max_delay"]) for n in range(1, retry["attempts"]))
    return float(sum(delays))


def run_budget(job: Job) -> float:
    """Seconds from start to end of the longest run: lock wait + every attempt (timeout + grace) + backoff."""
    wait = job.wait if job.on_busy == "wait" else 0.0
    attempts: int = job.retry["attempts"]
    return wait + attempts * (job.timeout + job.kill_grace) + backoff_total(job.retry)


def outer_budget(job: Job) -> int:
    """Whole seconds for a scheduler's timeout around `runjob NAME`: the run's budget plus a margin."""
    return int(run_budget(job) + MARGIN_S + 0.999)
