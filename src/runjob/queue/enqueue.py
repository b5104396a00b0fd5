"""`runjob enqueue NAME [k=v ...]`: check the params now (exit 2), put a run on the queue."""

from __future__ import annotations

import os
import time

from runjob.errors import UsageError
from runjob.queue.backends import open_store
from runjob.queue.store import MAX_PRIORITY
from runjob.records.logs import JsonSink, Records, new_run_id, timestamp
from runjob.registry import loader
from runjob.run import plan

TYPE_CHECKING = False
if TYPE_CHECKING:
    from runjob.queue.store import Store


def enqueue(
    config_path: str | None, name: str, words: list[str], priority: int, delay: str | None, at: float | None
) -> int:
    registry = loader.load(config_path, cached=True)
    not_before = _not_before(delay, at)
    if abs(priority) > MAX_PRIORITY:
        raise UsageError(f"--priority must be between -{MAX_PRIORITY} and {MAX_PRIORITY}, got {priority}")
    params = plan.parse_params(words)
    plan.build(registry, name, params)  # unknown job, bad or missing param, bad lock key: exit 2 now
    store = open_store(registry)
    try:
        put(
            store,
            Records(JsonSink(), name, new_run_id(), os.environ.get("RUNJOB_CORRELATION_ID")),
            name,
            params,
            priority,
            not_before,
        )
    finally:
        store.close()
    return 0


def put(store: Store, records: Records, name: str, params: dict[str, str], priority: int, not_before: float) -> str:
    """Enqueue one run and say so in a `queue.enqueued` record."""
    entry_id = store.put(name, params, priority, not_before)
    enqueued(records, name, entry_id, params, priority, not_before)
    return entry_id


def enqueued(
    records: Records, name: str, entry_id: str, params: dict[str, str], priority: int, not_before: float
) -> None:
    """The `queue.enqueued` record of a run on the queue (`tick` writes one per due run)."""
    records.emit(
        "queue.enqueued",
        f"{name}: queued as {entry_id}",
        queue_id=entry_id,
        params=params,
        priority=priority,
        not_before=timestamp(not_before) if not_before else None,
    )


def _not_before(delay: str | None, at: float | None) -> float:
    if delay is not None and at is not None:
        raise UsageError("--delay and --at cannot both be given")
    if delay is not None:
        from runjob.registry.durations import flag

        return time.time() + (flag(delay, "--delay") or 0.0)
    return at or 0.0
