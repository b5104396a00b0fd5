"""Schedules that are not cron expressions: `@every 90s`, `@at 2026-12-01T03:00:00Z`, `@manual`.

What each form means, and whether one is well-formed; nothing here knows a job or a
state dir (schedule/due.py decides when a job with one of them is due).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from datetime import datetime

# `kind` is asked of every job by status and list: the module imports nothing for it
# (datetime and the duration parser, with `re`, load only where a form is read).
EVERY, AT, MANUAL, CRON = "every", "at", "manual", "cron"
MIN_INTERVAL_S = 1.0


_HEADS = {"@every": EVERY, "@at": AT, "@manual": MANUAL}


def kind(expr: str | None) -> str | None:
    """Which kind of schedule `expr` is (None: no schedule)."""
    if not expr:
        return None
    if not expr.startswith("@") and not expr[0].isspace():
        return CRON  # the common case, asked for every job of a big registry: no split
    words = expr.split()
    return _HEADS.get(words[0].lower(), CRON) if words else CRON


def interval(expr: str) -> float:
    """The seconds of `@every D`; ValueError says what is wrong."""
    words = expr.split()
    if len(words) != 2:
        raise ValueError(f'"{expr}": write `@every DURATION`, e.g. `@every 90s`')
    from runjob.durations import parse_duration

    seconds = parse_duration(words[1])
    if seconds < MIN_INTERVAL_S:
        raise ValueError(f'"{expr}": the interval must be at least 1s')
    return seconds


def moment(expr: str) -> datetime:
    """The instant of `@at T` (RFC 3339 with `Z` or an offset); ValueError says what is wrong."""
    words = expr.split()
    from datetime import UTC, datetime

    hint = "write `@at 2026-12-01T03:00:00Z` (RFC 3339, with Z or an offset)"
    if len(words) != 2:
        raise ValueError(f'"{expr}": {hint}')
    try:
        when = datetime.fromisoformat(words[1])
    except ValueError:
        raise ValueError(f'"{expr}" is not a moment: {hint}') from None
    if when.tzinfo is None:
        raise ValueError(f'"{expr}" has no Z or offset: {hint}')
    return when.astimezone(UTC)


def problem(expr: str) -> str | None:
    """Why a non-cron schedule is unusable, or None (cron expressions: cron.problem)."""
    what = kind(expr)
    try:
        if what == EVERY:
            interval(expr)
        elif what == AT:
            moment(expr)
        elif what == MANUAL and expr.split() != ["@manual"]:
            return f'"{expr}": `@manual` takes nothing after it'
    except ValueError as e:
        return str(e)
    return None
