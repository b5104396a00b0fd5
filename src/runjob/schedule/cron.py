"""Cron expressions: runjob's one dialect, and when a schedule fires in a real time zone.

Parsing is cronsim's (vixie/Debian semantics plus L, W and #), on naive wall-clock times
only; this module maps wall times to instants itself, with Debian cron's rules for the
hours that daylight saving skips or repeats (cron(8), "Daylight Saving Time and other
time changes"):
- a fixed-time job (no `*` starting its minute or hour field) fires at the first pass of
  a repeated wall time only, and once, in the first minute after the jump, for wall times
  the clock skipped;
- a wildcard job (`*/15 * * * *`, `0 * * * *`, @hourly) fires at every minute whose wall
  time matches: both passes of a repeated hour, nothing for a skipped one.
Every answer comes from one set of fire instants, so `tick` (does it fire at minute M?)
and `status`/`list` (when does it fire next?) cannot disagree.

cronsim knows no @-aliases, so they are expanded here. Imported only by the commands
that look at schedules (validate, list, show, status, tick, export), never by a run.

A registry of 10,000 jobs holds far fewer distinct expressions, and `tick` asks of each
only "does it fire this minute?": each distinct expression is parsed once per process
(`_compiled`), and outside the one minute of an offset change the answer is a lookup of
the wall time's fields in the parsed sets (cronsim's own), not a walk of the time line.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cronsim import CronSim

_SECOND = timedelta(seconds=1)
_DAY = timedelta(days=1)

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
SECONDS_HINT = "seconds are not supported; use `@every 30s`"


def expand(expr: str) -> str:
    """The 5-field form of `expr` (aliases expanded, whitespace normalised)."""
    text = " ".join(expr.split())
    return ALIASES.get(text.lower(), text)


_problems: dict[str, str | None] = {}


def problem(expr: str) -> str | None:
    """Why `expr` is not a usable cron expression, or None (worked out once per distinct string)."""
    if expr not in _problems:
        _problems[expr] = _problem(expr)
    return _problems[expr]


def _problem(expr: str) -> str | None:
    from cronsim import CronSim, CronSimError

    text = expand(expr)
    if text.startswith("@"):
        return f'unsupported alias "{expr}" (known: {", ".join(ALIASES)})'
    fields = len(text.split())
    if fields == 6:  # Quartz/Spring style, seconds first: cronsim would take it, cron would not
        return f'"{expr}" has 6 fields; a schedule has 5 (minute hour day-of-month month day-of-week): {SECONDS_HINT}'
    if fields != 5:
        return f'"{expr}" has {fields} fields; a schedule has 5 (minute hour day-of-month month day-of-week)'
    try:
        next(CronSim(text, datetime(2000, 1, 1)))
    except CronSimError as e:
        return f'bad cron expression "{expr}": {e}'
    except StopIteration:
        return f'cron expression "{expr}" never fires'
    return None


def parse_at(text: str | None) -> float | None:
    """`--at`: an RFC 3339 instant, `Z` or an offset required (a bare wall time is ambiguous on DST nights)."""
    if text is None:
        return None
    from runjob.errors import UsageError

    try:
        when = datetime.fromisoformat(text)
        if when.tzinfo is not None:
            return when.timestamp()
    except (ValueError, OverflowError):
        pass
    raise UsageError(f'--at: "{text}" is not an RFC 3339 time with Z or an offset (e.g. 2026-11-23T16:05:00+00:00)')


def is_fixed(expr: str) -> bool:
    """Debian's test: a job runs "at a particular time" unless its minute or hour field starts with `*`."""
    minute, hour = expand(expr).split()[:2]
    return not minute.startswith("*") and not hour.startswith("*")


class _Compiled:
    """One distinct expression: its 5-field text, whether it is a fixed time, and its fields
    as cronsim parses them. Each distinct field is parsed once (`_part`): 10,000 daily jobs
    spread over the day share 60 minute fields, 24 hour fields and one day part."""

    __slots__ = ("text", "fixed", "minutes", "hours", "days")

    def __init__(self, expr: str) -> None:
        self.text = expand(expr)
        self.fixed = is_fixed(expr)
        minute, hour, dom, month, dow = self.text.split()
        self.minutes: set[int] = _part(f"{minute} * * * *").minutes
        self.hours: set[int] = _part(f"0 {hour} * * *").hours
        self.days: CronSim = _part(f"0 0 {dom} {month} {dow}")  # months, and the day-of-month/week rule

    def matches(self, wall: datetime) -> bool:
        """Does this wall time match? cronsim's `advance()` stops at once on such a time."""
        return (
            wall.second == 0
            and wall.microsecond == 0
            and wall.minute in self.minutes
            and wall.hour in self.hours
            and wall.month in self.days.months
            and self.days.match_day(wall.date())
        )


_parts: dict[str, CronSim] = {}


def _part(text: str) -> CronSim:
    """cronsim's parse of `text` (naive: no DST handling of its own), once per distinct text."""
    found = _parts.get(text)
    if found is None:
        from cronsim import CronSim

        found = _parts[text] = CronSim(text, datetime(2000, 1, 1))
    return found


_compiled_cache: dict[str, _Compiled] = {}


def _compiled(expr: str) -> _Compiled:
    found = _compiled_cache.get(expr)
    if found is None:
        found = _compiled_cache[expr] = _Compiled(expr)
    return found


_host: list[tzinfo] = []


def zone(name: str | None) -> tzinfo:
    """The named IANA zone, or the host's zone (its rules, not today's offset)."""
    from zoneinfo import ZoneInfo

    if name:
        return ZoneInfo(name)
    if not _host:
        _host.append(host_zone())
    return _host[0]


def host_zone() -> tzinfo:
    """The host's zone as the C library sees it: `TZ`, else /etc/localtime (a link into zoneinfo, or a file).

    A TZ that zoneinfo cannot read (a POSIX rule string such as "CET-1CEST") is refused rather
    than guessed at; an empty TZ, or no /etc/localtime, is UTC, as for the C library.
    """
    import os
    from zoneinfo import ZoneInfo

    from runjob.errors import ConfigError

    tz = os.environ.get("TZ")
    if tz is not None:
        name = tz[1:] if tz.startswith(":") else tz
        try:
            if name.startswith("/"):
                with open(name, "rb") as f:
                    return ZoneInfo.from_file(f, key=name)
            return ZoneInfo(name) if name else UTC
        except (ValueError, KeyError, OSError) as e:
            raise ConfigError(
                [
                    f'TZ="{tz}": not a time zone runjob can read ({e}); '
                    "use an IANA name such as TZ=Europe/Berlin, or set `timezone` per job"
                ]
            ) from None
    try:
        target = os.path.realpath("/etc/localtime")
        if "/zoneinfo/" in target:
            return ZoneInfo(target.split("/zoneinfo/", 1)[1])
        with open("/etc/localtime", "rb") as f:
            return ZoneInfo.from_file(f, key="localtime")
    except (ValueError, KeyError, OSError):
        return UTC


def timezone_problem(name: str) -> str | None:
    try:
        zone(name)
    except (ValueError, KeyError, OSError):
        return f'unknown time zone "{name}" (use an IANA name such as "Europe/Berlin")'
    return None


def next_times(expr: str, tz_name: str | None, after: datetime, count: int) -> list[datetime]:
    """The next `count` times `expr` fires strictly after `after`, in the job's zone."""
    out: list[datetime] = []
    z = zone(tz_name)
    for _ in range(count):
        when = next_fire(expr, z, out[-1] if out else after)
        if when is None:
            break
        out.append(when.astimezone(z))
    return out


def fires_at(expr: str, tz_name: str | None, minute: datetime) -> bool:
    """Does `expr` fire at this minute (an aware instant on a minute boundary)?

    The same answer as the walk (`next_fire` from the second before), which is only taken
    when the zone's offset changes at this very minute: elsewhere the minute's wall time
    either matches or not, and a fixed time fires on the first pass of its wall time only.
    """
    z = zone(tz_name)
    offset = _offset(z, minute)
    if _offset(z, minute - _SECOND) != offset:
        return next_fire(expr, z, minute - _SECOND, until=minute) == minute
    compiled, wall = _compiled(expr), _wall(minute, offset)
    if not compiled.matches(wall):
        return False
    return not compiled.fixed or wall.replace(tzinfo=z, fold=0).astimezone(UTC) >= minute - _SECOND


def missed(expr: str, tz_name: str | None, start: datetime, end: datetime, cap: int = 1440) -> datetime | None:
    """The last time in (start, end] at which `expr` fires, or None (at most `cap` fire times looked at)."""
    z = zone(tz_name)
    last = None
    for _ in range(cap):
        when = next_fire(expr, z, last or start, until=end)
        if when is None:
            break
        last = when
    return last


def next_fire(expr: str, z: tzinfo, after: datetime, until: datetime | None = None) -> datetime | None:
    """The first instant (UTC) strictly after `after` at which `expr` fires in zone `z`.

    None when there is none up to `until` (or within cronsim's 50 years). The time line is
    walked in stretches of one UTC offset: within one, wall time = instant + offset.
    """
    compiled = _compiled(expr)
    text, fixed = compiled.text, compiled.fixed
    start = after.astimezone(UTC).replace(microsecond=0)  # whole seconds keep the bisection exact
    offset = _offset(z, start)
    low = _wall(start, offset)  # candidates are wall times strictly after this
    while True:
        when = _first_in_stretch(text, fixed, z, low, offset, start)
        if when is None:
            return None
        end = when if until is None else min(when, until)
        change = _first_change(z, start, end, offset)
        if change is None:
            return when if until is None or when <= until else None
        new = _offset(z, change)
        if fixed and new > offset and _matches_between(text, _wall(change, offset), _wall(change, new)):
            return change  # a fixed time the clock skipped: once, right after the jump
        start, offset, low = change, new, _wall(change, new) - _SECOND


def _first_in_stretch(
    text: str, fixed: bool, z: tzinfo, low: datetime, offset: timedelta, start: datetime
) -> datetime | None:
    """The instant of the first wall-time match after `low`, assuming `offset` holds from `start` on."""
    from cronsim import CronSim

    for wall in CronSim(text, low):
        # A fixed time whose first pass is already behind us is a second pass of a repeated hour: skip it.
        if not fixed or wall.replace(tzinfo=z, fold=0).astimezone(UTC) >= start:
            return (wall - offset).replace(tzinfo=UTC)
    return None


def _matches_between(text: str, low: datetime, high: datetime) -> bool:
    """Does any wall time in [low, high) match?"""
    from cronsim import CronSim

    wall = next(CronSim(text, low - _SECOND), None)
    return wall is not None and wall < high


def _first_change(z: tzinfo, start: datetime, end: datetime, offset: timedelta) -> datetime | None:
    """The first instant in (start, end] whose UTC offset is not `offset`, or None.

    Probed a day apart (zones keep an offset for weeks), then bisected to the second.
    """
    probe, before = start, start
    while probe < end:
        probe = min(probe + _DAY, end)
        if _offset(z, probe) != offset:
            while probe - before > _SECOND:
                middle = before + timedelta(seconds=int((probe - before).total_seconds()) // 2)
                if _offset(z, middle) == offset:
                    before = middle
                else:
                    probe = middle
            return probe
        before = probe
    return None


def _offset(z: tzinfo, instant: datetime) -> timedelta:
    offset = instant.astimezone(z).utcoffset()
    return offset if offset is not None else timedelta(0)


def _wall(instant: datetime, offset: timedelta) -> datetime:
    return (instant + offset).replace(tzinfo=None)
