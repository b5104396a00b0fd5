"""The queue's storage: one Protocol, two backends (SQLite in the state dir, Redis for a fleet).

Every entry is a dict with `id`, `job`, `params`, `priority`, `state` (pending, running,
dead), `enqueued_at`, `not_before`, `worker`, `lease_until`, `takes`, and when dead
`exit_code` and `stderr_tail`. A taken entry is leased, not removed: a worker renews its
leases while the runs last, and an entry whose lease lapsed (its worker died) is pending again.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Protocol

    from runjob.registry.config import Registry

    class Store(Protocol):
        def put(self, job: str, params: dict[str, str], priority: int, not_before: float) -> str: ...
        def claim(self, worker: str, lease: float) -> dict[str, Any] | None: ...
        def renew(self, ids: list[str], worker: str, lease: float) -> None: ...
        def finish(self, entry_id: str, worker: str) -> None: ...
        def bury(self, entry_id: str, worker: str, exit_code: int | None, stderr_tail: str) -> None: ...
        def release(self, entry_id: str, worker: str) -> None: ...
        def entries(self) -> list[dict[str, Any]]: ...
        def retry(self, entry_id: str) -> bool: ...
        def drop(self, entry_id: str) -> bool: ...
        def set_priority(self, entry_id: str, priority: int) -> bool: ...
        def pause(self, job: str) -> None: ...
        def resume(self, job: str) -> None: ...
        def paused(self) -> list[str]: ...
        def beat(self, worker: str, info: dict[str, Any], ttl: float) -> None: ...
        def gone(self, worker: str) -> None: ...
        def workers(self) -> list[dict[str, Any]]: ...
        def close(self) -> None: ...


ALL = "*"  # `queue pause` with no job: every job
MAX_PRIORITY = 1000  # keeps the Redis score (priority and order in one float) exact


def new_id() -> str:
    return os.urandom(8).hex()


def open_store(registry: Registry) -> Store:
    """The registry's queue: Redis when `queue_backend` names one, else SQLite in the state dir."""
    url = registry.defaults.get("queue_backend") or ""
    if url:
        from runjob.queue.redis_store import RedisStore

        return RedisStore(url, registry.defaults.get("lock_password_env"))
    from runjob.queue.sqlite_store import SqliteStore

    return SqliteStore(registry.state_dir)


def lease_of(registry: Registry) -> float:
    return float(registry.defaults.get("queue_lease", 60.0))


def stop_grace_of(registry: Registry) -> float:
    return float(registry.defaults.get("stop_grace", 30.0))
