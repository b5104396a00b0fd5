"""Overlap locks in Redis, for the same crontab on many hosts (SPEC section 6).

A lock is the key `runjob:lock:KEY`, set with NX and a TTL by redis-py's Lock, whose
value (the owner token) is the holder's JSON (host, pid, run id, job, since), so any
host can say who holds it. Only the owner's token releases it (redis-py's Lua script).
A thread renews the TTL every few seconds while the run lasts; if renewal finds the key
gone or owned by someone else, or Redis stays unreachable past the TTL, the lock is
lost and the runner is told (a `lock.lost` record; `on_lock_lost` decides whether the
child is stopped).

If runjob is SIGKILLed, nothing renews the key: it expires after the TTL (default:
timeout + kill_grace + 60 s), so another host may start while an orphaned child still
runs past that. A host-local file lock does not have this gap.

The host's file lock is always taken too, after the key (runner._take_lock), so a host
never overlaps itself whichever backend was reachable.
"""

from __future__ import annotations

import os
import time

from runjob.errors import ConfigError
from runjob.logs import encode

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading
    from typing import Any, Callable

    import redis

PREFIX = "runjob:lock:"
RENEW_EVERY_S = 5.0
CONNECT_TIMEOUT_S = 3.0
TTL_MARGIN_S = 60.0


class Unavailable(Exception):
    """Redis could not be reached (or refused us) when taking the lock."""


def client(url: str, password_env: str | None) -> redis.Redis:
    import redis

    from urllib.parse import urlsplit

    if urlsplit(url).password:
        raise ConfigError(["lock_backend: do not write the password in the URL; name an environment variable "
                           "in lock_password_env"])  # fmt: skip
    password = os.environ.get(password_env) if password_env else None
    if password_env and password is None:
        raise Unavailable(f"${password_env} (lock_password_env) is not set")
    return redis.Redis.from_url(url, password=password, socket_timeout=CONNECT_TIMEOUT_S,
                                socket_connect_timeout=CONNECT_TIMEOUT_S)  # fmt: skip


class RedisLock:
    """A held Redis lock. `fd` is -1: there is nothing for the child to inherit."""

    fd = -1
    local: Any = None  # the host's file lock, taken after the key (runner._take_lock)

    def __init__(self, lock: Any, key: str, holder: dict[str, Any], ttl: float) -> None:
        self.lock = lock
        self.key = key
        self.holder = holder
        self.ttl = ttl
        import threading

        self.done = threading.Event()
        self.thread: threading.Thread | None = None

    def set_holder(self, **info: object) -> None:
        pass  # the holder is the token, written when the lock was taken

    def watch(self, on_lost: Callable[[str], None]) -> None:
        """Renew the TTL in the background; call `on_lost(reason)` once if the lock is lost."""
        import threading

        self.thread = threading.Thread(target=self._renew, args=(on_lost,), daemon=True)
        self.thread.start()

    def _renew(self, on_lost: Callable[[str], None]) -> None:
        import redis

        last_ok = time.monotonic()
        while not self.done.wait(min(RENEW_EVERY_S, self.ttl / 3)):
            try:
                self.lock.reacquire()
                last_ok = time.monotonic()
            except redis.exceptions.LockError:
                on_lost("the lock key is gone or owned by another holder (Redis restarted or the TTL ran out?)")
                return
            except redis.exceptions.RedisError as e:
                if time.monotonic() - last_ok > self.ttl:
                    on_lost(f"Redis unreachable for longer than the TTL ({self.ttl:g}s): {e}")
                    return

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


def acquire(url: str, password_env: str | None, key: str, ttl: float, wait_s: float,
            holder: dict[str, Any]) -> RedisLock | None:  # fmt: skip
    """The lock (waiting up to `wait_s`), None if another holder keeps it; Unavailable if Redis is not there."""
    import redis

    conn = client(url, password_env)
    lock = conn.lock(PREFIX + key, timeout=ttl, sleep=0.05, thread_local=False)
    try:
        got = lock.acquire(blocking=wait_s > 0, blocking_timeout=wait_s or None, token=encode(holder))
    except redis.exceptions.RedisError as e:
        raise Unavailable(f"Redis at {url} is unavailable: {e}") from None
    return RedisLock(lock, key, holder, ttl) if got else None


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
            out.append({"lock_key": key, "backend": url, "ttl_s": conn.pttl(raw_key) / 1000} | holder)
    except redis.exceptions.RedisError as e:
        raise Unavailable(f"Redis at {url} is unavailable: {e}") from None
    return sorted(out, key=lambda h: h["lock_key"])
