"""`runjob queue`: the entries and the queue's health; retry, drop, priority, pause, resume."""

from __future__ import annotations

import json
import time

from runjob.errors import UsageError
from runjob.queue.backends import open_store
from runjob.queue.store import ALL, MAX_PRIORITY
from runjob.registry import loader

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SHOWN = ("id", "job", "params", "priority", "state", "enqueued_at", "not_before", "worker", "lease_until", "takes")


def show(config_path: str | None, as_json: bool) -> int:
    store = open_store(loader.load(config_path, cached=True))
    try:
        entries, workers, paused = store.entries(), store.workers(), store.paused()
    finally:
        store.close()
    report = {"entries": [_public(e) for e in entries], "health": health(entries, workers, paused)}
    if as_json:
        print(json.dumps(report))
    else:
        _table(report)
    return 0


def health(entries: list[dict[str, Any]], workers: list[dict[str, Any]], paused: list[str]) -> dict[str, Any]:
    """Depth per job and priority, the oldest pending entry's age, dead count, live workers."""
    now = time.time()
    pending = [e for e in entries if e["state"] == "pending"]
    depth: dict[str, dict[str, int]] = {}
    for e in pending:
        per_job = depth.setdefault(e["job"], {})
        per_job[str(e["priority"])] = per_job.get(str(e["priority"]), 0) + 1
    oldest = min((e["enqueued_at"] for e in pending), default=None)
    return {
        "pending": len(pending),
        "running": sum(e["state"] == "running" for e in entries),
        "dead": sum(e["state"] == "dead" for e in entries),
        "depth": depth,
        "oldest_pending_age_s": None if oldest is None else round(max(0.0, now - oldest), 3),
        "workers": workers,
        "paused": paused,
    }


def act(config_path: str | None, action: str, target: str | None, value: int | None = None) -> int:
    """retry / drop / priority one entry by id; pause / resume one job, or all."""
    registry = loader.load(config_path, cached=True)
    if action in ("pause", "resume") and target is not None:
        registry.job(target)  # unknown job: exit 2
    if action == "priority" and (value is None or abs(value) > MAX_PRIORITY):
        raise UsageError(f"queue priority ID N: N must be between -{MAX_PRIORITY} and {MAX_PRIORITY}")
    store = open_store(registry)
    try:
        if action == "pause":
            store.pause(target or ALL)
        elif action == "resume":
            store.resume(target or ALL)
        elif not _one(store, action, target or "", value):
            raise UsageError(_why(action, target or ""))
    finally:
        store.close()
    return 0


def _one(store: Any, action: str, entry_id: str, value: int | None) -> bool:
    if action == "retry":
        return bool(store.retry(entry_id))
    if action == "drop":
        return bool(store.drop(entry_id))
    return bool(store.set_priority(entry_id, value))


def _why(action: str, entry_id: str) -> str:
    if action == "retry":
        return f'queue retry: no dead entry "{entry_id}"'
    if action == "drop":
        return f'queue drop: no pending or dead entry "{entry_id}" (a running one cannot be dropped)'
    return f'queue priority: no entry "{entry_id}"'


def _public(entry: dict[str, Any]) -> dict[str, Any]:
    shown = {k: entry.get(k) for k in SHOWN}
    if entry["state"] == "dead":
        shown |= {"exit_code": entry.get("exit_code"), "stderr_tail": entry.get("stderr_tail") or ""}
    return shown


def _table(report: dict[str, Any]) -> None:
    print(f"{'ID':<17} {'JOB':<20} {'PRIO':>5} {'STATE':<8} PARAMS / EXIT")
    for e in report["entries"]:
        extra = f"exit {e['exit_code']}" if e["state"] == "dead" else json.dumps(e["params"])
        print(f"{e['id']:<17} {e['job']:<20} {e['priority']:>5} {e['state']:<8} {extra}")
    h = report["health"]
    age = "-" if h["oldest_pending_age_s"] is None else f"{h['oldest_pending_age_s']}s"
    print(
        f"pending {h['pending']}, running {h['running']}, dead {h['dead']}, oldest pending {age}, "
        f"live workers {len(h['workers'])}" + (f", paused: {', '.join(h['paused'])}" if h["paused"] else "")
    )
