"""The queue a registry names: Redis when `queue_backend` is set, else SQLite in the state dir."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from runjob.queue.store import Store
    from runjob.registry.config import Registry


def open_store(registry: Registry) -> Store:
    """The registry's queue: Redis when `queue_backend` names one, else SQLite in the state dir."""
    url = registry.defaults.get("queue_backend") or ""
    if url:
        from runjob.queue.redis_store import RedisStore

        return RedisStore(url, registry.defaults.get("lock_password_env"))
    from runjob.queue.sqlite_store import SqliteStore

    return SqliteStore(registry.state_dir)
