"""Overlap locks in Redis, for the same crontab on many hosts (SPEC section 6).

A lock is the key `runjob:lock:KEY`, set with NX and a TTL by redis-py's Lock, whose
value (the owner token) is the holder's JSON (host, pid, run id, job, since), so any
host can say who holds it. Only the owner's token releases it (redis-py's Lua script).
A thread renews the TTL every few seconds while the run lasts; if renewal finds the key
gone or owned by someone else, or Redis stays unreachable past the TTL, the lock is
lost and the runner is told (a `lock.lost` record; `on_lock_lost` decides whether the
child is stopped).

While Redis cannot be reached, the child is stopped early enough to be dead before the
key can expire: the last renewal that got through, plus the TTL, minus one Redis
exchange (COMMAND_BOUND_S), kill_grace and a safety second. `validate` requires a TTL
that leaves room for at least one renewal before that point (`ttl_problem`). redis-py's
own retries are off, so one exchange is bounded by the socket timeouts.

If runjob is SIGKILLed, nothing renews the key: it expires after the TTL (default, budget.lock_ttl:
the effective timeout + kill_grace + 60 s), so another host may start while an orphaned child still
runs past that. A host-local file lock does not have this gap.

The host's file lock is always taken too, after the key (runner._take_lock), so a host
never overlaps itself whichever backend was reachable.

The password comes from the variable named by lock_password_env, never from the URL:
URLs are printed (records, `locks`, `show`), so a URL holding one is refused.
"""

from __future__ import annotations

import os
import time

from runjob.errors import ConfigError
from runjob.records.encoding import encode
from runjob.records.redact import shown_url

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading
    from collections.abc import Callable
    from typing import Any

    import redis

    from runjob.proc.process import Watch

PREFIX = "runjob:lock:"
RENEW_EVERY_S = 5.0
CONNECT_TIMEOUT_S = 3.0
COMMAND_BOUND_S = 3 * CONNECT_TIMEOUT_S  # connect, then at most two round trips (a script load, its call)
SAFETY_S = 1.0
# URL query options that carry a secret, or that would undo the timeouts above.
_REFUSED_OPTIONS = ("password", "socket_timeout", "socket_connect_timeout", "retry_on_timeout", "retry_on_error")


class Unavailable(Exception):
    """Redis could not be reached (or refused us) when taking the lock."""


def url_problem(url: str) -> str | None:
    """Why `url` cannot be a lock backend, or None. Never quotes the URL: it may hold a secret."""
    from urllib.parse import parse_qsl, urlsplit

    if not url.startswith(("redis://", "rediss://", "unix://")):
        return 'expected "" (file locks) or a redis://, rediss:// or unix:// URL'
    try:
        parts = urlsplit(url)
        options = {name.lower() for name, _ in parse_qsl(parts.query, keep_blank_values=True)}
    except ValueError as e:
        return f"not a valid URL ({e})"
    if parts.password is not None or "password" in options:
        return "do not write the password in the URL; name its environment variable in lock_password_env"
    refused = sorted(options & set(_REFUSED_OPTIONS))
    if refused:
        return f"the option {refused[0]} is set by runjob (its deadlines depend on it); remove it from the URL"
    return None


def ttl_problem(ttl: float, kill_grace: float) -> str | None:
    """Why a lock TTL cannot protect a run: the child must be stopped before the key can expire."""
    least = RENEW_EVERY_S + COMMAND_BOUND_S + SAFETY_S + kill_grace
    if ttl < least:
        return (
            f"{ttl:g}s is too short to stop the job before the key expires: at least {least:g}s "
            f"(renewal every {RENEW_EVERY_S:g}s + one Redis exchange {COMMAND_BOUND_S:g}s + "
            f"{SAFETY_S:g}s + kill_grace {kill_grace:g}s)"
        )
    return None


def client(url: str, password_env: str | None) -> redis.Redis:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    problem = url_problem(url)
    if problem:
        raise ConfigError([f"lock_backend: {problem}"])
    password = os.environ.get(password_env) if password_env else None
    if password_env and password is None:
        raise Unavailable(f"${password_env} (lock_password_env) is not set")
    # No retries inside redis-py (its default retries ten times with backoff): one exchange
    # must stay within COMMAND_BOUND_S for the lock-loss deadline to hold.
    return redis.Redis.from_url(
        url,
        password=password,
        socket_timeout=CONNECT_TIMEOUT_S,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
    )


class RedisLocker:
    """One lock key in Redis, and this host's file lock of the same key (the protocol.Locker of a
    job with a lock_backend). Redis's key first: it names its holder atomically, so a loser's
    lock.busy can say who won. Then the host's file lock, always: a host never overlaps itself,
    whichever backend was reachable."""

    def __init__(self, url: str, password_env: str | None, key: str, ttl: float, kill_grace: float, local: Any) -> None:
        self.url, self.password_env, self.key = url, password_env, key
        self.ttl = ttl  # budget.lock_ttl
        self.kill_grace = kill_grace  # the child is stopped this long before the key can expire
        self.local = local  # lock.FileLocker of the same key

    def acquire(self, wait_s: float, holder: dict[str, Any]) -> RedisLock | None:
        """The lock; None if busy; Unavailable if Redis cannot be reached."""
        fleet = acquire(self.url, self.password_env, self.key, self.ttl, wait_s, holder)
        if fleet is None:
            return None
        fleet.kill_grace = self.kill_grace
        local = self.local.acquire(wait_s, holder)
        if local is None:  # a run of this host taken while Redis was down still holds it
            fleet.release()
            return None
        fleet.local = local
        fleet.fd = local.fd  # the child inherits the host lock, as with the file backend
        return fleet

    def holder(self) -> dict[str, Any]:
        return read_holder(self.url, self.password_env, self.key)


class RedisLock:
    """A held Redis lock; `fd` is the host's file lock taken with it, which the child inherits."""

    def __init__(self, lock: Any, key: str, holder: dict[str, Any], ttl: float, renewed: float) -> None:
        self.lock = lock
        self.key = key
        self.holder = holder
        self.ttl = ttl
        self.renewed = renewed  # monotonic time the last successful set or renewal was sent
        self.kill_grace = 0.0  # set by RedisLocker: how long stopping the child may take
        self.fd = -1
        self.local: Any = None  # the host's file lock, taken after the key (RedisLocker.acquire)
        import threading

        self.done = threading.Event()
        self.thread: threading.Thread | None = None

    def set_holder(self, **info: object) -> None:
        pass  # the holder is the token, written when the lock was taken

    def watch(self, inner: Watch, lost: Callable[[str], None], moved: Callable[[bool], None]) -> Watch:
        """Renew the TTL in the background; call `lost(reason)` once if the lock is lost."""
        import threading

        self.thread = threading.Thread(target=self._renew, args=(lost,), daemon=True)
        self.thread.start()
        return inner

    def last_try(self) -> float:
        """The latest monotonic time a renewal may start: if it fails, the child is still dead before
        the key can expire (one Redis exchange, kill_grace, a safety margin)."""
        return self.renewed + self.ttl - self.kill_grace - COMMAND_BOUND_S - SAFETY_S

    def _renew(self, on_lost: Callable[[str], None]) -> None:
        import redis

        error = ""
        while True:
            now = time.monotonic()
            due = min(now + min(RENEW_EVERY_S, self.ttl / 3), self.last_try())
            if due <= now:  # a failed renewal now could not stop the child in time: stop it now
                left = self.renewed + self.ttl - now
                on_lost(f"Redis unreachable; the key may expire in {left:.1f}s, so the job is stopped first: {error}")
                return
            if self.done.wait(due - now):
                return
            sent = time.monotonic()
            try:
                self.lock.reacquire()
                self.renewed = sent
            except redis.exceptions.LockError:
                on_lost("the lock key is gone or owned by another holder (Redis restarted or the TTL ran out?)")
                return
            except redis.exceptions.RedisError as e:
                error = str(e)[:200]

    def release(self) -> None:
        import redis

        self.done.set()
        if self.thread is not None:
            self.thread.join(CONNECT_TIMEOUT_S * 2)
        try:
            self.lock.release()
        except redis.exceptions.RedisError:
            pass  # lost meanwhile, or Redis is down: the TTL ends it
        if self.local is not None:
            self.local.release()


def acquire(
    url: str, password_env: str | None, key: str, ttl: float, wait_s: float, holder: dict[str, Any]
) -> RedisLock | None:
    """The lock (waiting up to `wait_s`), None if another holder keeps it; Unavailable if Redis is not there."""
    import redis

    conn = client(url, password_env)
    lock = conn.lock(PREFIX + key, timeout=ttl, sleep=0.05, thread_local=False)
    sent = time.monotonic()
    try:
        got = lock.acquire(blocking=wait_s > 0, blocking_timeout=wait_s or None, token=encode(holder))
    except redis.exceptions.RedisError as e:
        raise Unavailable(f"Redis at {shown_url(url)} is unavailable: {e}") from None
    if wait_s > 0:  # the set that won was sent after `sent`, at most one poll and one exchange ago
        sent = max(sent, time.monotonic() - 0.05 - COMMAND_BOUND_S)
    return RedisLock(lock, key, holder, ttl, sent) if got else None


def read_holder(url: str, password_env: str | None, key: str) -> dict[str, Any]:
    import json

    import redis

    try:
        raw = client(url, password_env).get(PREFIX + key)
    except (redis.exceptions.RedisError, Unavailable):
        return {}
    try:
        holder = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def held_locks(url: str, password_env: str | None) -> list[dict[str, Any]]:
    """Every runjob lock held in this Redis now, with its holder and time to live."""
    import redis

    conn = client(url, password_env)
    out = []
    try:
        for raw_key in conn.scan_iter(match=PREFIX + "*", count=500):
            key = raw_key.decode()[len(PREFIX) :]
            holder = read_holder(url, password_env, key)
            out.append({"lock_key": key, "backend": shown_url(url), "ttl_s": conn.pttl(raw_key) / 1000} | holder)
    except redis.exceptions.RedisError as e:
        raise Unavailable(f"Redis at {shown_url(url)} is unavailable: {e}") from None
    return sorted(out, key=lambda h: h["lock_key"])
