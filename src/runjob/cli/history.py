"""`runjob history`, `runjob stale` and `runjob locks` (`status` is in status.py).

`history` is an everyday command (answered without typer off a terminal): it loads the
registry, the store and the JSON writer, nothing more; the watchdog's imports wait for
`stale` and `locks`.
"""

from __future__ import annotations

import os
import time

from runjob.cli import answer
from runjob.errors import UsageError
from runjob.records import jsonout
from runjob.records.encoding import timestamp
from runjob.registry import loader
from runjob.store import history

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3
    from typing import Any

    from runjob.registry.config import Registry


def open_store(state_dir: str) -> sqlite3.Connection | None:
    """The history store, or None when no run has written one yet."""
    if not history.exists(state_dir):
        return None
    return history.connect(state_dir)


def _times(row: dict[str, Any]) -> dict[str, Any]:
    for key in ("started", "ended"):
        value = row.pop(key)
        row[f"{key}_at"] = timestamp(value) if value else None
    return row


def show_history(
    config_path: str | None, job: str | None, limit: int, status: str | None, since: str | None, as_json: bool
) -> int:
    registry = loader.load(config_path, cached=True)
    if job is not None and job in registry.pipelines:
        return _pipeline_history(registry, job, limit, as_json)
    if job is not None:
        registry.job(job)
    if status is not None:
        from runjob.run.model import ROW_STATUSES  # the run package, only to check a --status given

        if status not in ROW_STATUSES:
            raise UsageError(f'--status must be one of {", ".join(ROW_STATUSES)}, got "{status}"')
    if limit < 1:
        raise UsageError("--limit must be at least 1")
    db = open_store(registry.state_dir)
    rows = _rows(db, job, status, _since(since), limit) if db else []
    return answer.show(rows, as_json, "history_table")


def _pipeline_history(registry: Registry, name: str, limit: int, as_json: bool) -> int:
    """`runjob history PIPELINE`: its runs, newest first, each with its jobs' latest runs."""
    from runjob.pipeline.store import runs

    if limit < 1:
        raise UsageError("--limit must be at least 1")
    db = open_store(registry.state_dir)
    rows = runs(db, name, limit) if db else []
    if as_json:
        print(jsonout.dumps(rows))
    else:
        for r in rows:
            jobs = ", ".join(f"{j['job']} {j['status']}" for j in r["jobs"])
            print(f"{(r['started_at'] or '')[:19]}  {r['status']:<8} {r['pipeline_run_id']}  {jobs}")
    return 0


def _rows(
    db: sqlite3.Connection, job: str | None, status: str | None, since: float | None, limit: int
) -> list[dict[str, Any]]:
    host = os.uname().nodename
    rows = [history.row_dict(r, host) for r in history.query(db, job, status, since, limit)]
    if status in ("running", "crashed"):
        rows = [r for r in rows if r["status"] == status]
    return [_times(r) for r in rows]


_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_MAX_S = 365 * 86400  # durations.MAX_S


def since_seconds(text: str) -> float:
    """`--since` in seconds. The usual `7d`, `12h`, `30m` are read here; everything else
    (and anything out of bounds, for its error) goes to durations.py, whose
    regexes would otherwise be compiled on every call (`re` and `enum`: ~2 ms)."""
    number, unit = text[:-1], text[-1:]
    if 0 < len(number) <= 12 and number.isascii() and number.isdecimal() and unit in _UNIT_S:
        seconds = int(number) * _UNIT_S[unit]
        if seconds <= _MAX_S:
            return float(seconds)
    from runjob.durations import flag

    return flag(text, "--since") or 0.0


def _since(text: str | None) -> float | None:
    return None if text is None else time.time() - since_seconds(text)


def check_stale(config_path: str | None, notify: bool, pretty: bool) -> int:
    from runjob.ops import watchdog
    from runjob.records.logs import JsonSink, Records, new_run_id

    registry = loader.load(config_path)
    db = open_store(registry.state_dir)
    found = watchdog.stale_jobs(registry, db, time.time())
    sink = JsonSink()
    for job, params, why in found:
        records = Records(sink, job.name, new_run_id(), os.environ.get("RUNJOB_CORRELATION_ID"))
        fields = why | {"last_success_at": timestamp(why["last_success_at"]) if why["last_success_at"] else None}
        which = " ".join([job.name, *(f"{k}={v}" for k, v in params.items())])
        record = records.emit(
            "job.stale", f"{which} is stale: {why['reason']}", level="error", owners=job.owners, params=params, **fields
        )
        if notify:
            from runjob.ops import notify as notifier

            notifier.finish(notifier.start(registry, job, "stale", record), records)
    if pretty and not found:
        print("no stale jobs")
    return 1 if found else 0


def show_locks(config_path: str | None, as_json: bool) -> int:
    from runjob.ops import watchdog

    registry = loader.load(config_path)
    return answer.show(watchdog.held_locks(registry), as_json, "locks_table")
