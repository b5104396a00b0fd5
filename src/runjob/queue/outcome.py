"""What a worker does with a run it started: its argv, and its entry once it ended."""

from __future__ import annotations

import os

from runjob.registry.schema import SUBCOMMANDS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from runjob.queue.worker import Worker


def args(registry_path: str, entry: dict[str, Any]) -> list[str]:
    """`--config FILE NAME k=v ...`: the crontab form, the fast path (`run NAME` if NAME is a subcommand)."""
    words = [f"{k}={v}" for k, v in entry["params"].items()]
    form = ["run"] if entry["job"] in SUBCOMMANDS else []
    return ["--config", os.path.abspath(registry_path), *form, entry["job"], *words]


def settle(worker: Worker, entry: dict[str, Any], run_id: str, returncode: int) -> None:
    """Success: the entry is done. Stopped by our SIGTERM: pending again. Else: dead letter."""
    code = 128 - returncode if returncode < 0 else returncode
    fields = {"queue_id": entry["id"], "params": entry["params"], "run": run_id, "exit_code": code}
    if code == 0:
        worker.store.finish(entry["id"], worker.id)
        worker.records.emit("queue.done", f"{entry['job']}: {entry['id']} done", **fields)
    elif worker.stopped_runs:
        worker.store.release(entry["id"], worker.id)
        worker.records.emit(
            "queue.released",
            f"{entry['job']}: {entry['id']} stopped at shutdown; pending again",
            level="warning",
            **fields,
        )
    else:
        tail = stderr_tail(worker.registry.state_dir, run_id)
        worker.store.bury(entry["id"], worker.id, code, tail)
        worker.records.emit(
            "queue.dead",
            f"{entry['job']}: {entry['id']} failed (exit {code}); dead letter",
            level="error",
            **fields,
            stderr_tail=tail,
        )


def stderr_tail(state_dir: str, run_id: str) -> str:
    """The run's stderr tail as its history row has it (masked there); "" if it has none."""
    from runjob.errors import InternalError
    from runjob.store import history

    try:
        db = history.connect(state_dir)
    except InternalError:
        return ""
    try:
        row = db.execute("SELECT stderr_tail FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    finally:
        db.close()
    return (row[0] or "") if row else ""
