"""Which jobs are stale (no success within max_age), and which locks a job holds now."""

from __future__ import annotations

import os
import sys

from runjob import history, lock
from runjob.templating import placeholders

TYPE_CHECKING = False
if TYPE_CHECKING:
    import re
    import sqlite3
    from typing import Any

    from runjob.config import Job, Registry


def staleness(job: Job, last_success_end: float | None, now: float) -> dict[str, Any] | None:
    """Why `job` is stale, or None (also None for jobs without max_age)."""
    if job.max_age is None:
        return None
    if last_success_end is None:
        return {"max_age_s": job.max_age, "last_success_at": None, "age_s": None, "reason": "never succeeded"}
    age = now - last_success_end
    if age <= job.max_age:
        return None
    return {"max_age_s": job.max_age, "last_success_at": last_success_end, "age_s": round(age, 3),
            "reason": f"last success {age:.0f}s ago, max_age {job.max_age:g}s"}  # fmt: skip


def stale_jobs(registry: Registry, db: sqlite3.Connection | None, now: float) -> list[tuple[Job, dict[str, Any]]]:
    out = []
    for job in registry.jobs.values():
        if job.max_age is None:
            continue
        success = history.last_runs(db, job.name)[1] if db is not None else None
        why = staleness(job, success[history.COLUMNS.index("ended")] if success else None, now)
        if why is not None:
            out.append((job, why))
    return out


def lock_pattern(job: Job) -> re.Pattern[str]:
    """A regex matching every lock key the job's template can produce."""
    import re  # only when a lock is held: `status` and `history` load no regex engine otherwise

    out, rest = "", job.lock_key
    for name in placeholders(job.lock_key):
        before, _, rest = rest.partition("{" + name + "}")
        spec = job.params.get(name)
        out += re.escape(before) + (f"(?:{spec['pattern']})" if spec else re.escape(job.name))
    return re.compile(out + re.escape(rest))


def held_by(job: Job, held: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not held:  # the usual case: no regex to compile per job (`status` asks for every job)
        return []
    pattern = lock_pattern(job)
    return [h for h in held if pattern.fullmatch(str(h["lock_key"]))]


def held_locks(registry: Registry) -> list[dict[str, Any]]:
    """Locks held now: this host's file locks, and those in every Redis the registry uses."""
    held = [h | {"backend": "file"} for h in lock.held_locks(os.path.join(registry.state_dir, "locks"))]
    backends = sorted({(j.lock_backend, j.lock_password_env or "") for j in registry.jobs.values() if j.lock_backend})
    for url, password_env in backends:
        from runjob import redis_lock

        try:
            held += redis_lock.held_locks(url, password_env or None)
        except redis_lock.Unavailable as e:
            sys.stderr.write(f"runjob: {e}; its locks are not shown\n")
    # A Redis-backed run also holds this host's file lock: show it once, as the Redis lock.
    in_redis = {h["lock_key"] for h in held if h["backend"] != "file"}
    return [h for h in held if h["backend"] != "file" or h["lock_key"] not in in_redis]
