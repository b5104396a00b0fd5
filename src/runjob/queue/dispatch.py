"""`dispatch = "queue"`: `tick` enqueues a due run instead of starting it."""

from __future__ import annotations

from runjob.queue.backends import open_store
from runjob.queue.enqueue import enqueued
from runjob.records.logs import Records, new_run_id

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from runjob.registry.config import Registry
    from runjob.schedule.entry import Entry


def enqueue_due(registry: Registry, due: list[tuple[Entry, str, str | None]], tick: Records) -> list[dict[str, Any]]:
    """Every due run put on the queue in one transaction (all or none), then a `queue.enqueued`
    record for each, as tick's `started` list has them."""
    store = open_store(registry)
    try:
        ids = store.put_many([(entry.job.name, entry.params, 0, 0.0) for entry, _, _ in due])
    finally:
        store.close()
    out = []
    for entry_id, (entry, reason, _) in zip(ids, due, strict=True):
        records = Records(tick.sink, entry.job.name, new_run_id(), tick.common["correlation_id"])
        enqueued(records, entry.job.name, entry_id, entry.params, 0, 0.0)
        out.append({"job": entry.job.name, "params": entry.params, "queue_id": entry_id, "reason": reason})
    return out
