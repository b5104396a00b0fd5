"""How long a run may take: the one source of its timeout, its Redis lock TTL and its outer budget.

`effective_timeout` is the child's deadline per attempt (the job's `timeout`, or `--timeout`);
the Redis lock's TTL and a scheduler's budget are both built from it, so an override can
never leave the key expiring under a run that is still allowed to go on. A scheduler that
wraps runjob (systemd's TimeoutStartSec=, a CronJob's activeDeadlineSeconds) must not kill
a run that runjob itself would still let go on. Pure arithmetic on the job: no imports, so
the runner may use it on the hot path.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from runjob.registry.config import Job

# runjob's own start, records and after-run steps (history, notify, ping) on top of the run.
MARGIN_S = 30.0
# Default Redis lock TTL beyond timeout + kill_grace: renewal keeps the key while runjob lives;
# the TTL only matters once runjob is gone (SIGKILLed), so it is the run's length plus a minute.
LOCK_TTL_MARGIN_S = 60.0


def effective_timeout(job: Job, override: float | None = None) -> float:
    """Seconds an attempt's child may run: `--timeout` if given, else the job's `timeout`."""
    return job.timeout if override is None else override


def lock_ttl(job: Job, timeout: float | None = None) -> float:
    """The Redis lock key's TTL: the job's `lock_ttl`, else one attempt's time plus a margin."""
    return job.lock_ttl or effective_timeout(job, timeout) + job.kill_grace + LOCK_TTL_MARGIN_S


def backoff_total(retry: dict[str, Any]) -> float:
    """The longest the waits between attempts add up to, as RetryState.next_delay gives them
    (jitter only shortens a wait)."""
    grow = 2 if retry["backoff"] == "exponential" else 1
    delays = (min(retry["delay"] * grow ** (n - 1), retry["max_delay"]) for n in range(1, retry["attempts"]))
    return float(sum(delays))


def run_budget(job: Job, timeout: float | None = None) -> float:
    """Seconds from start to end of the longest run: lock wait + every attempt (timeout + grace) + backoff."""
    wait = job.wait if job.on_busy == "wait" else 0.0
    attempts: int = job.retry["attempts"]
    return wait + attempts * (effective_timeout(job, timeout) + job.kill_grace) + backoff_total(job.retry)


def outer_budget(job: Job) -> int:
    """Whole seconds for a scheduler's timeout around `runjob NAME`: the run's budget plus a margin."""
    return int(run_budget(job) + MARGIN_S + 0.999)
