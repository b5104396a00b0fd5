"""When a job with a schedule that is not a cron expression is due (triggers/timers.py parses them).

- `@every D`: due at any tick once D has passed since a tick last started it (first due
  on the first tick). The starts are kept in `state_dir/every.json`, written by `tick`
  under its lock; a start that lies in the future (the clock went back) makes the job due,
  so a clock step never stops later ticks.
- `@at T`: due at every tick at or after T until one of its runs that started at or after
  T has succeeded (the history store says so); then `done` for good.
- `@manual`: never due, like no schedule at all.
Imported by the commands that look at schedules (validate, list, status, tick, export),
never by a run.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta

from runjob import safefs
from runjob.triggers.timers import AT, MANUAL, interval, kind, moment

TYPE_CHECKING = False
if TYPE_CHECKING:
    from runjob.registry.config import Job
    from runjob.schedule.entry import Entry

STATE_FILE = "every.json"


def is_active(job: Job) -> bool:
    """Can the job ever be due? Not when disabled, manual or unscheduled."""
    return bool(job.schedule) and job.enabled and kind(job.schedule) != MANUAL


# --- @every: the starts tick recorded -------------------------------------------------


def _key(entry: Entry) -> str:
    return " ".join(entry.words)


def starts(state_dir: str) -> dict[str, str]:
    """Entry -> when a tick last started it (ISO), {} when none or unreadable."""
    try:
        with open(os.path.join(state_dir, STATE_FILE)) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return (
        {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(data, dict) else {}
    )


def last_start(state_dir: str, entry: Entry, known: dict[str, str] | None = None) -> datetime | None:
    text = (starts(state_dir) if known is None else known).get(_key(entry))
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def every_due(entry: Entry, now: datetime, last: datetime | None) -> bool:
    """Due when never started, when the interval has passed, or when the last start lies ahead
    of `now` (the clock went back: waiting for it would stop the job for that long)."""
    if last is None or last > now:
        return True
    return now - last >= timedelta(seconds=interval(entry.job.schedule or ""))


def record_starts(state_dir: str, started: list[Entry], now: datetime) -> None:
    """Remember that a tick started these @every entries at `now` (under tick's lock)."""
    if not started:
        return
    data = starts(state_dir) | {_key(e): now.isoformat() for e in started}
    safefs.replace(os.path.join(state_dir, STATE_FILE), json.dumps(data, sort_keys=True).encode())


# --- @at: done once a run has succeeded ---------------------------------------------


def done(job: Job, state_dir: str) -> bool:
    """Has a run of the one-time job, started at or after its moment, succeeded?"""
    from runjob.store import history

    if not history.exists(state_dir):
        return False
    table, column = ("pipeline_runs", "pipeline") if hasattr(job, "stages") else ("runs", "job")
    db = history.connect(state_dir)
    try:
        row = db.execute(
            f"SELECT 1 FROM {table} WHERE {column} = ? AND status = 'success' AND started >= ? LIMIT 1",
            (job.name, moment(job.schedule or "").timestamp()),
        ).fetchall()
    finally:
        db.close()
    return bool(row)


def next_times(job: Job, now: datetime, count: int, state_dir: str | None) -> list[datetime]:
    """The next due times of an @every or @at job seen from `now` ([] when never again)."""
    what = kind(job.schedule)
    if not job.enabled or what == MANUAL:
        return []
    if what == AT:
        if state_dir is not None and done(job, state_dir):
            return []
        return [max(moment(job.schedule or ""), now)]
    step = timedelta(seconds=interval(job.schedule or ""))
    first = now
    if state_dir is not None:
        from runjob.schedule.entry import entries_of

        known = starts(state_dir)
        lasts = [last_start(state_dir, e, known) for e in entries_of(job)]
        if lasts and all(t is not None and t <= now for t in lasts):
            first = max(now, min(t + step for t in lasts if t is not None))
    return [first + i * step for i in range(count)]
