"""`dispatch = "queue"`: `tick` enqueues a due run instead of starting it."""

from __future__ import annotations

from runjob.queue.backends import open_store
from runjob.queue.enqueue import put
from runjob.records.logs import Records, new_run_id

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from runjob.registry.config import Registry
    from runjob.schedule.entry import Entry


def enqueue_due(registry: Registry, due: list[tuple[Entry, str, str | None]], tick: Records) -> list[dict[str, Any]]:
    """Each due run put on the queue (one store for all), as tick's `started` list has them."""
    store = open_store(registry)
    out = []
    try:
        for entry, reason, _ in due:
            records = Records(tick.sink, entry.job.name, new_run_id(), tick.common["correlation_id"])
            entry_id = put(store, records, entry.job.name, entry.params, 0, 0.0)
            out.append({"job": entry.job.name, "params": entry.params, "queue_id": entry_id, "reason": reason})
    finally:
        store.close()
    return out
