"""Occurrence claims: a fleet of ticks sharing one Redis starts each scheduled occurrence once.

The overlap lock only excludes runs that overlap in time: a 0.1 s job ticked by host A
and, a second later, by host B would run twice. So before `tick` starts a Redis-backed
job it claims the occurrence - (job, instance, scheduled time) - with `SET NX` and a TTL
that outlives the schedule's interval and `catch_up`, so a late tick of the same
occurrence, even a catch-up, finds the claim. The loser starts nothing and says who won.
A manual `runjob NAME` is not an occurrence and never claims.

The key is `runjob:claim:JOB:INSTANCE:TIME` (TIME in UTC), its value the winner's JSON
(host, tick pid, the run id the started run will have, claimed_at). The last claim of
each job is also kept under `runjob:claimed:JOB` (no TTL) for `status --json`.
"""

from __future__ import annotations

import json
from datetime import UTC

from runjob.locks import redis_lock
from runjob.records.encoding import encode, timestamp

TYPE_CHECKING = False
if TYPE_CHECKING:
    from datetime import datetime
    from typing import Any

    from runjob.schedule.entry import Entry

PREFIX = "runjob:claim:"
LAST_PREFIX = "runjob:claimed:"
MARGIN_S = 3600  # beyond the interval: hosts whose clocks or ticks lag still find the claim


class Unavailable(Exception):
    """Redis could not be reached to claim an occurrence."""


_clients: dict[tuple[str, str | None], Any] = {}


def _client(url: str, password_env: str | None) -> Any:
    """One client (one connection) per Redis for all the claims of a tick."""
    if (url, password_env) not in _clients:
        _clients[url, password_env] = redis_lock.client(url, password_env)
    return _clients[url, password_env]


def key(entry: Entry, occurrence: datetime) -> str:

    instance = ",".join(f"{k}={v}" for k, v in sorted(entry.params.items()))
    return f"{PREFIX}{entry.job.name}:{instance}:{occurrence.astimezone(UTC):%Y-%m-%dT%H:%MZ}"


def ttl_s(entry: Entry, occurrence: datetime) -> int:
    """Long enough that no later tick can take this occurrence again: the interval to the next one, or catch_up."""
    from runjob.triggers import cron

    job = entry.job
    following = cron.next_times(job.schedule or "", job.timezone, occurrence, 1)
    interval = (following[0] - occurrence).total_seconds() if following else 86400.0
    return int(max(interval, job.catch_up or 0) + MARGIN_S)


def claim(entry: Entry, occurrence: datetime, me: dict[str, Any]) -> dict[str, Any] | None:
    """Take the occurrence for `me`: None when taken, else the winner's claim. Unavailable if Redis is not there."""
    import redis

    job = entry.job
    name = key(entry, occurrence)
    try:
        conn = _client(job.lock_backend, job.lock_password_env)
        if conn.set(name, encode(me), nx=True, ex=ttl_s(entry, occurrence)):
            last = me | {"occurrence": timestamp(occurrence.timestamp()), "params": entry.params}
            conn.set(LAST_PREFIX + job.name, encode(last))
            return None
        raw = conn.get(name)
    except (redis.exceptions.RedisError, redis_lock.Unavailable) as e:
        raise Unavailable(f"Redis at {job.lock_backend} is unavailable: {e}") from None
    return _decode(raw)


def last_claim(url: str, password_env: str | None, job: str) -> dict[str, Any] | None:
    """The last occurrence of `job` claimed in this Redis (occurrence, host, run id), or None."""
    import redis

    try:
        raw = redis_lock.client(url, password_env).get(LAST_PREFIX + job)
    except (redis.exceptions.RedisError, redis_lock.Unavailable):
        return None
    return _decode(raw) if raw else None


def _decode(raw: bytes | str | None) -> dict[str, Any]:
    try:
        found = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}
