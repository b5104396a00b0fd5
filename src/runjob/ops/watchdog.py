"""Which jobs are stale (no success within max_age), and which locks a job holds now."""

from __future__ import annotations

import os
import sys

from runjob.locks import lock
from runjob.store import history

TYPE_CHECKING = False
if TYPE_CHECKING:
    import re
    import sqlite3
    from collections.abc import Iterable
    from typing import Any

    from runjob.registry.config import Job, Registry


def staleness(job: Job, last_success_end: float | None, now: float) -> dict[str, Any] | None:
    """Why `job` is stale, or None (also None for jobs without max_age)."""
    if job.max_age is None:
        return None
    if last_success_end is None:
        return {"max_age_s": job.max_age, "last_success_at": None, "age_s": None, "reason": "never succeeded"}
    age = now - last_success_end
    if age <= job.max_age:
        return None
    return {
        "max_age_s": job.max_age,
        "last_success_at": last_success_end,
        "age_s": round(age, 3),
        "reason": f"last success {age:.0f}s ago, max_age {job.max_age:g}s",
    }


def instances(
    job: Job, db: sqlite3.Connection | None, texts: Iterable[str] | None = None
) -> list[tuple[dict[str, str], str | None]]:
    """The job's instances as (params, their text in the history or None if never run).

    A job with `instances` has those (defaults filled in, as a run resolves them); a job with
    params but no instances has each param set it has run with; any other job, one. `texts`:
    the param sets as stored, when the caller has read them already (status: latest_runs)."""
    if not job.params:  # the usual case: one instance, and no scan of the job's rows for param sets
        return [({}, None)]
    if texts is not None:
        from runjob.records import jsonout

        seen = {text: jsonout.loads(text or "{}") for text in texts}
    else:
        seen = history.param_sets(db, job.name) if db is not None else {}
    if job.instances:
        defaults = {k: spec["default"] for k, spec in job.params.items() if spec["default"] is not None}
        wanted = [defaults | i for i in job.instances]
    elif job.params and seen:
        wanted = list(seen.values())
    else:
        return [({}, None)]  # the job as a whole: its newest run whatever the params
    by_value = {tuple(sorted(params.items())): text for text, params in seen.items()}
    return [(params, by_value.get(tuple(sorted(params.items())), "")) for params in wanted]


def stale_jobs(
    registry: Registry, db: sqlite3.Connection | None, now: float
) -> list[tuple[Job, dict[str, str], dict[str, Any]]]:
    """(job, instance params, why) for every instance with no success within the job's max_age."""
    out = []
    for job in registry.jobs.values():
        if job.max_age is None:
            continue
        for params, text in instances(job, db):
            success = history.last_runs(db, job.name, text)[1] if db is not None and text != "" else None
            why = staleness(job, success[history.COLUMNS.index("ended")] if success else None, now)
            if why is not None:
                out.append((job, params, why))
    return out


def lock_pattern(job: Job) -> re.Pattern[str]:
    """A regex matching every lock key the job's template can produce."""
    import re  # only when a lock is held: `status` and `history` load no regex engine otherwise

    from runjob.registry.templating import placeholders

    out, rest = "", job.lock_key
    for name in placeholders(job.lock_key):
        before, _, rest = rest.partition("{" + name + "}")
        spec = job.params.get(name)
        out += re.escape(before) + (f"(?:{spec['pattern']})" if spec else re.escape(job.name))
    return re.compile(out + re.escape(rest))


def held_by(job: Job, held: list[dict[str, Any]], params: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The locks `job` holds now; with `params`, those of that instance only."""
    if not held:  # the usual case: no regex to compile per job (`status` asks for every job)
        return []
    if params:
        from runjob.registry import lock_keys

        try:
            key = lock_keys.resolve(job.lock_key, job.name, params)
        except KeyError:  # a param of the key this instance does not set
            key = None
        if key is not None:
            return [h for h in held if h["lock_key"] == key]
    pattern = lock_pattern(job)
    return [h for h in held if pattern.fullmatch(str(h["lock_key"]))]


def held_locks(registry: Registry) -> list[dict[str, Any]]:
    """Locks held now: this host's file locks, and those in every Redis the registry uses."""
    held = [h | {"backend": "file"} | _child(h) for h in lock.held_locks(os.path.join(registry.state_dir, "locks"))]
    backends = sorted({(j.lock_backend, j.lock_password_env or "") for j in registry.jobs.values() if j.lock_backend})
    for url, password_env in backends:
        from runjob.locks import redis_lock

        try:
            held += redis_lock.held_locks(url, password_env or None)
        except redis_lock.Unavailable as e:
            sys.stderr.write(f"runjob: {e}; its locks are not shown\n")
    # A Redis-backed run also holds this host's file lock: show it once, as the Redis lock.
    in_redis = {h["lock_key"] for h in held if h["backend"] != "file"}
    return [h for h in held if h["backend"] != "file" or h["lock_key"] not in in_redis]


def _child(holder: dict[str, Any]) -> dict[str, Any]:
    """The pid of the job's process holding a file lock: the child inherits the locked file,
    so it is the process with the file open whose parent is the runjob named in it."""
    from runjob.proc import procid

    runjob_pid = holder.get("pid")
    try:
        st = os.stat(str(holder["lock_file"]))
    except OSError:
        return {"child_pid": None}
    others = [p for p in procid.holders_of((st.st_dev, st.st_ino)) if p != runjob_pid]
    return {"child_pid": next((p for p in others if _parent(p) == runjob_pid), others[0] if others else None)}


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None
