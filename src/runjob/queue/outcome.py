"""A queued run's argv, and what its history row says of it once it ended."""

from __future__ import annotations

import os

from runjob.registry.schema import SUBCOMMANDS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def args(registry_path: str, entry: dict[str, Any]) -> list[str]:
    """`--config FILE NAME k=v ...`: the crontab form, the fast path (`run NAME` if NAME is a subcommand)."""
    words = [f"{k}={v}" for k, v in entry["params"].items()]
    form = ["run"] if entry["job"] in SUBCOMMANDS else []
    return ["--config", os.path.abspath(registry_path), *form, entry["job"], *words]


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
