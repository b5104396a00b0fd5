"""Cron expressions, via cronsim (vixie-cron semantics, plus L and # extensions).

cronsim knows no @-aliases, so they are expanded here. Imported only by the commands
that look at schedules (validate, list, show, status, tick, export), never by a run.
"""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo

_ONE_SECOND = timedelta(seconds=1)

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def expand(expr: str) -> str:
    """The 5-field form of `expr` (aliases expanded, whitespace normalised)."""
    text = " ".join(expr.split())
    return ALIASES.get(text.lower(), text)


def problem(expr: str) -> str | None:
    """Why `expr` is not a usable cron expression, or None."""
    from cronsim import CronSim, CronSimError

    text = expand(expr)
    if text.startswith("@"):
        return f'unsupported alias "{expr}" (known: {", ".join(ALIASES)})'
    try:
        next(CronSim(text, datetime(2000, 1, 1)))
    except CronSimError as e:
        return f'bad cron expression "{expr}": {e}'
    except StopIteration:
        return f'cron expression "{expr}" never fires'
    return None


def zone(name: str | None) -> tzinfo:
    """The named IANA zone, or the host's local zone."""
    if name:
        from zoneinfo import ZoneInfo

        return ZoneInfo(name)
    local = datetime.now().astimezone().tzinfo
    assert local is not None
    return local


def timezone_problem(name: str) -> str | None:
    try:
        zone(name)
    except (ValueError, KeyError, OSError):
        return f'unknown time zone "{name}" (use an IANA name such as "Europe/Berlin")'
    return None


def next_times(expr: str, tz_name: str | None, after: datetime, count: int) -> list[datetime]:
    """The next `count` times `expr` fires strictly after `after`, in the job's zone."""
    from cronsim import CronSim

    it = CronSim(expand(expr), after.astimezone(zone(tz_name)))
    return [next(it) for _ in range(count)]


def fires_between(expr: str, tz_name: str | None, start: datetime, end: datetime) -> datetime | None:
    """The last time in (start, end] at which `expr` fires, or None."""
    from cronsim import CronSim

    it = CronSim(expand(expr), end.astimezone(zone(tz_name)) + _ONE_SECOND, reverse=True)
    last = next(it, None)
    return last if last is not None and last > start else None

