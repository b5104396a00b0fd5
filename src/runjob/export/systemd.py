"""A .service and a .timer per scheduled job instance, OnCalendar converted from cron.

Cron and systemd calendars differ in a few places; those are refused with an error
naming the job rather than exported wrong: a restricted day-of-month together with a
restricted day-of-week when neither starts with `*` (cron runs when either matches,
systemd when both do), LW, L or # beside another restricted day field or in a list, and
steps on the day of week. `L`, `NL` and `N#k` alone are spelled exactly (`~01`, `~07/1`,
`-08..14`).
Every `%` that reaches a unit line is written `%%` (systemd's specifiers), and a value
that a unit line cannot hold (a newline) is refused with the job named.
"""

from __future__ import annotations

import os

from runjob.errors import ConfigError
from runjob.export import dialects, names
from runjob.registry.budget import outer_budget
from runjob.schedule.entry import Entry
from runjob.schedule.scheduled import entries
from runjob.triggers import cron

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from runjob.registry.config import Registry

MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
SYSTEMD_DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
UNIT_CHARS = "A-Za-z0-9_.-"  # no ":": `systemd-analyze verify` reads it as PATH:ALIAS
SECRETS_FILE = "/etc/runjob/secrets.env"  # KEY=value lines for the names in a job's `secrets`, mode 0600
UNIT_NAME_LIMIT = 220  # systemd's limit is 255 with the .service/.timer suffix
Untranslatable = dialects.Untranslatable


def on_calendar(expr: str, timezone: str | None = None) -> str:
    """The systemd OnCalendar= form of a cron expression; Untranslatable if there is none."""
    parts = cron.expand(expr).split()
    if len(parts) != 5:
        raise Untranslatable(f'"{expr}" is not a 5-field cron expression')
    minute, hour, month = (_field(parts[i], *FIELDS[i]) for i in (0, 1, 3))
    days = _extension_days(parts)
    if days is None:
        dialects.refuse_extensions(parts, "systemd")
        dow = _field(parts[4], *FIELDS[4])
        days = (dow if parts[4] != "*" else "", f"-{_field(parts[2], *FIELDS[2])}")
    if parts[2] != "*" and parts[4] != "*" and not dialects.day_and(parts):
        # With a field starting with `*` (`*/2`) cron ANDs the two, as systemd does.
        raise Untranslatable(
            "cron runs when day of month OR day of week matches (neither field starts with *); systemd needs both"
        )
    text = f"*-{month}{days[1]} {hour}:{minute}:00"
    if days[0]:
        text = f"{days[0]} {text}"
    return f"{text} {timezone}" if timezone else text


def _extension_days(parts: list[str]) -> tuple[str, str] | None:
    """(weekday, day part) for cronsim's `L` (last day), `N#k` (k-th weekday N) and `NL` (last
    weekday N) when the other day field is `*`; None for anything else."""
    dom, dow = parts[2].upper(), parts[4].upper()
    if dom == "L" and dow == "*":
        return "", "~01"  # systemd's ~ counts from the month's end
    if dom != "*" or "," in dow:
        return None
    if "#" in dow:
        term, _, nth = dow.partition("#")
        k = int(nth)  # cronsim: 1..5, the k-th week of days 7k-6..7k
        return SYSTEMD_DAYS[_value(term.lower(), "day of week") % 7], f"-{7 * k - 6:02d}..{min(7 * k, 31):02d}"
    if dow.endswith("L") and dow[:-1].isdigit():
        return SYSTEMD_DAYS[int(dow[:-1]) % 7], "~07/1"  # the weekday among the last seven days
    return None


def _field(text: str, name: str, low: int, high: int) -> str:
    """One cron field as systemd writes it, via the explicit set of values it matches.

    Going through the set avoids two traps: systemd's weekdays run Mon..Sun (cron's 0-1
    is Sun,Mon), and systemd 252 skips values of a repetition that does not divide its
    range (`*:0/31` misses midnight), so only dividing minute/hour steps stay as steps.
    """
    if text == "*":
        return "*"
    weekday = name == "day of week"
    values: set[int] = set()
    for part in text.split(","):
        values |= _values(part, name, low, high)
    if weekday:
        values = {v % 7 for v in values}
        order = [1, 2, 3, 4, 5, 6, 0]
        return _compress([v for v in order if v in values], lambda v: SYSTEMD_DAYS[v], order)
    step = _even_step(text, name)
    if step:
        return f"{low:02d}/{step}"
    return _compress(sorted(values), lambda v: f"{v:02d}", list(range(low, high + 1)))


def _values(part: str, name: str, low: int, high: int) -> set[int]:
    base, _, step_text = part.partition("/")
    if step_text and name == "day of week":
        raise Untranslatable("systemd cannot repeat a day of week with a step")
    step = int(step_text) if step_text else 1
    if base == "*":
        a, b = low, high
    elif "-" in base:
        a, b = (_value(v, name) for v in base.split("-", 1))
        if a > b:
            raise Untranslatable(f'the {name} range "{base}" wraps around')
    else:
        a = _value(base, name)
        b = high if step_text else a
    return set(range(a, b + 1, step))


def _even_step(text: str, name: str) -> int | None:
    """The step of a `*/N` minute or hour field when N divides 60 or 24, else None."""
    size = {"minute": 60, "hour": 24}.get(name)
    if size and text.startswith("*/") and text[2:].isdigit() and size % int(text[2:]) == 0:
        return int(text[2:])
    return None


def _compress(values: list[int], show: Callable[[int], str], order: list[int]) -> str:
    """Runs of three or more neighbours (in `order`) as a..b, the rest listed."""
    out: list[str] = []
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and order.index(values[j + 1]) == order.index(values[j]) + 1:
            j += 1
        if j - i >= 2:
            out.append(f"{show(values[i])}..{show(values[j])}")
        else:
            out += [show(v) for v in values[i : j + 1]]
        i = j + 1
    return ",".join(out)


def _value(text: str, name: str) -> int:
    lowered = text.lower()
    if name == "month" and lowered in MONTHS:
        return MONTHS.index(lowered) + 1
    if name == "day of week" and lowered in DAYS:
        return DAYS.index(lowered)
    return int(text)


def unit_name(entry: Entry) -> str:
    return names.object_name(entry, "runjob-", UNIT_CHARS, UNIT_NAME_LIMIT)


def _text(text: str) -> str:
    """Free text for a unit line (Description=): on one line, `%` not a specifier."""
    return " ".join(text.splitlines()).replace("%", "%%")


def _quote(word: str) -> str:
    """An ExecStart= argument: systemd's own quoting, % and $ escaped."""
    word = word.replace("%", "%%").replace("$", "$$")
    if any(c in word for c in " \t\"'\\;"):
        return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return word


def timer_lines(expr: str, timezone: str | None, catch_up: float | None) -> str:
    """The [Timer] lines that say when: OnCalendar= for cron and one-time schedules,
    OnUnitActiveSec= for an interval (OnActiveSec=0 starts it once first, as tick does)."""
    from runjob.triggers import timers

    what = timers.kind(expr)
    if what == timers.EVERY:
        return f"OnActiveSec=0\nOnUnitActiveSec={timers.interval(expr):g}s\n"
    if what == timers.AT:  # fires once; "until one run succeeds" is tick's rule
        return f"OnCalendar={timers.moment(expr):%Y-%m-%d %H:%M:%S} UTC\nPersistent=true\n"
    # Persistent= makes up a missed run at boot however late: only for jobs that ask to catch up.
    return f"OnCalendar={on_calendar(expr, timezone)}\n" + ("Persistent=true\n" if catch_up else "")


def _units(entry: Entry, name: str, runjob_path: str, config: str, timing: str) -> dict[str, str]:
    job = entry.job
    title = " ".join(entry.words) + (f": {job.description}" if job.description else "")
    exec_start = " ".join(_quote(w) for w in [runjob_path, "--config", config, *entry.words])
    secrets = f"EnvironmentFile={SECRETS_FILE}\n" if job.secrets else ""  # refuse to start without it
    return {
        f"{name}.service": (
            f"[Unit]\nDescription={_text('runjob ' + title)}\n\n"
            f"[Service]\nType=oneshot\n{secrets}ExecStart={exec_start}\n"
            f"TimeoutStartSec={outer_budget(job)}\n"
        ),
        f"{name}.timer": (
            f"[Unit]\nDescription={_text('Schedule of runjob ' + ' '.join(entry.words))}\n\n"
            f"[Timer]\n{timing}Unit={name}.service\n\n"
            "[Install]\nWantedBy=timers.target\n"
        ),
    }


def _problem(entry: Entry) -> str | None:
    for word in entry.words[1:]:
        if "\n" in word or "\r" in word:
            key = word.split("=")[0]
            return (
                f"jobs.{entry.job.name}.instances: `{key}=...` has a newline in its value; a unit line cannot hold one"
            )
    return None


def render(registry: Registry, runjob_path: str) -> tuple[dict[str, str], list[str]]:
    """Unit file name -> content, for every scheduled entry; ConfigError naming each job systemd cannot schedule."""
    files: dict[str, str] = {}
    errors, named = [], []
    config = os.path.abspath(registry.path)
    for entry in entries(registry):
        job = entry.job
        try:
            calendar = timer_lines(job.schedule or "", job.timezone, job.catch_up)
        except Untranslatable as e:
            errors.append(f'jobs.{job.name}.schedule: systemd cannot express "{job.schedule}": {e}')
            continue
        problem = _problem(entry)
        if problem:
            errors.append(problem)
            continue
        named.append((unit_name(entry), entry))
        files |= _units(entry, named[-1][0], runjob_path, config, calendar)
    if errors:
        raise ConfigError(errors, registry.path)
    names.check_unique(named, "systemd unit", registry)
    return files, []
