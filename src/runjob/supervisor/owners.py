"""Telling a worker's owners that it gave up, through the same channels as a failed job."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from runjob.records.logs import Records
    from runjob.registry.config import Registry


class _AsJob:
    """What notify.start reads of a job, for a worker."""

    def __init__(self, name: str, worker: dict[str, Any]) -> None:
        self.name = name
        self.description = worker["description"]
        self.idempotency = ""
        self.owners = worker["owners"]


def tell_owners(
    registry: Registry, name: str, worker: dict[str, Any], record: dict[str, Any], records: Records
) -> None:
    """Deliver `record` (worker.giveup) to the worker's owners; each outcome is a notify.* record."""
    from runjob.ops import notify

    if not any(worker["owners"].values()):
        return
    deliveries = notify.start(registry, _AsJob(name, worker), "giveup", record)  # type: ignore[arg-type]
    notify.finish(deliveries, records)
