"""`runjob tick`: start every job due this minute, each as its own detached `runjob NAME`.

Meant for one crontab line, `* * * * * runjob tick`. The last minute ticked is kept in
`state_dir/tick.json`, written under `tick.lock` before any job is started, so a second
tick in the same minute starts nothing (never twice, at the price of missing the minute
if tick dies between the write and the starts). After downtime each job with `catch_up`
is started once if its last missed time is within `catch_up`, never once per missed minute.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

from runjob import atomic, config, cron, relay
from runjob.errors import InternalError, UsageError
from runjob.lock import exclusive
from runjob.logs import JsonSink, Records, new_run_id, timestamp
from runjob.schedule import Entry, entries

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MINUTE = timedelta(minutes=1)


def tick(config_path: str | None, now: float | None = None) -> int:
    registry = config.load(config_path, check_schedules=True)
    state_dir = registry.state_dir
    minute = datetime.fromtimestamp((time.time() if now is None else now) // 60 * 60, timezone.utc)
    with _tick_lock(state_dir):
        last = _last_minute(state_dir)
        due = [] if last is not None and last >= minute else _due(entries(registry), minute, last)
        if last is None or last < minute:
            _save_minute(state_dir, minute)
    pipes: list[int] | None = [] if due and relay.needed() else None
    started = [_start(registry.path, entry, reason, pipes) for entry, reason in due]
    Records(JsonSink(), "tick", new_run_id(), os.environ.get("RUNJOB_CORRELATION_ID")).emit(
        "tick",
        f"tick {minute:%Y-%m-%d %H:%M}: started {len(started)} job(s)"
        + (" (this minute was already ticked)" if last is not None and last >= minute else ""),
        minute=timestamp(minute.timestamp()),
        started=started,
    )
    if pipes:
        relay.copy_lines(pipes)  # every run's records, each whole, into our one pipe
    return 0


def parse_at(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f'--at: "{text}" is not an ISO 8601 time (e.g. 2026-11-23T16:05:00+00:00)') from None
    return (when if when.tzinfo else when.astimezone()).timestamp()


def _due(scheduled: list[Entry], minute: datetime, last: datetime | None) -> list[tuple[Entry, str]]:
    due = []
    for entry in scheduled:
        expr, zone = entry.job.schedule or "", entry.job.timezone
        if cron.fires_between(expr, zone, minute - MINUTE, minute) == minute:
            due.append((entry, "due"))
        elif last is not None and entry.job.catch_up and last < minute - MINUTE:
            missed = cron.fires_between(expr, zone, last, minute - MINUTE)
            if missed is not None and (minute - missed).total_seconds() <= entry.job.catch_up:
                due.append((entry, f"catch-up of {timestamp(missed.timestamp())}"))
    return due


def _start(registry_path: str, entry: Entry, reason: str, pipes: list[int] | None) -> dict[str, Any]:
    """Start one run; with `pipes`, on a pipe of its own whose read end is appended there."""
    argv = [*_runjob(), "--config", os.path.abspath(registry_path), *entry.words]
    read_end, write_end = os.pipe() if pipes is not None else (-1, None)
    # Its own session: a run survives tick's exit (a relaying tick stays only to copy records).
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=write_end, start_new_session=True)
    if write_end is not None:
        os.close(write_end)
        pipes.append(read_end)  # type: ignore[union-attr]
    return {"job": entry.job.name, "params": entry.params, "pid": proc.pid, "reason": reason}


def _runjob() -> list[str]:
    me = os.path.abspath(sys.argv[0])
    if os.path.isfile(me) and os.access(me, os.X_OK):
        return [me]
    return [sys.executable, "-m", "runjob"]


def _tick_lock(state_dir: str) -> exclusive:
    try:
        os.makedirs(state_dir, exist_ok=True)
        return exclusive(os.path.join(state_dir, "tick.lock"))
    except OSError as e:
        raise InternalError(f"cannot use state dir {state_dir}: {e.strerror}") from None


def _last_minute(state_dir: str) -> datetime | None:
    try:
        with open(os.path.join(state_dir, "tick.json")) as f:
            return datetime.fromisoformat(json.load(f)["last_minute"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _save_minute(state_dir: str, minute: datetime) -> None:
    path = os.path.join(state_dir, "tick.json")
    try:
        atomic.replace(path, json.dumps({"last_minute": minute.isoformat()}).encode())
    except OSError as e:
        raise InternalError(f"cannot record the tick in {path}: {e.strerror}") from None
