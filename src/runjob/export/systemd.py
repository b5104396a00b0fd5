"""A .service and a .timer per scheduled job instance, OnCalendar converted from cron.

Cron and systemd calendars differ in a few places; those are refused with an error
naming the job rather than exported wrong: a restricted day-of-month together with a
restricted day-of-week (cron runs when either matches, systemd when both do), the L, W
and # extensions, and steps on the day of week.
"""

from __future__ import annotations

import os

from runjob import cron
from runjob.errors import ConfigError
from runjob.schedule import Entry, entries, run_budget

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

    from runjob.config import Registry

MONTHS = "jan feb mar apr may jun jul aug sep oct nov dec".split()
DAYS = "sun mon tue wed thu fri sat".split()
SYSTEMD_DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
UNIT_CHARS = "A-Za-z0-9:_.-"


class Untranslatable(ValueError):
    pass


def on_calendar(expr: str, timezone: str | None = None) -> str:
    """The systemd OnCalendar= form of a cron expression; Untranslatable if there is none."""
    parts = cron.expand(expr).split()
    if len(parts) != 5:
        raise Untranslatable(f'"{expr}" is not a 5-field cron expression')
    minute, hour, dom, month, dow = (_field(p, *spec) for p, spec in zip(parts, FIELDS, strict=True))
    if parts[2] != "*" and parts[4] != "*":
        raise Untranslatable("cron runs when day of month OR day of week matches; systemd needs both")
    text = f"*-{month}-{dom} {hour}:{minute}:00"
    if parts[4] != "*":
        text = f"{dow} {text}"
    return f"{text} {timezone}" if timezone else text


def _field(text: str, name: str, low: int, high: int) -> str:
    """One cron field as systemd writes it, via the explicit set of values it matches.

    Going through the set avoids two traps: systemd's weekdays run Mon..Sun (cron's 0-1
    is Sun,Mon), and systemd 252 skips values of a repetition that does not divide its
    range (`*:0/31` misses midnight), so only dividing minute/hour steps stay as steps.
    """
    if any(c in text.upper() for c in "LW#?"):
        raise Untranslatable(f'the {name} "{text}" uses an extension systemd has no match for')
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
    return "runjob-" + entry.safe_slug(UNIT_CHARS, 200)


def _quote(word: str) -> str:
    """An ExecStart= argument: systemd's own quoting, % and $ escaped."""
    word = word.replace("%", "%%").replace("$", "$$")
    if any(c in word for c in " \t\"'\\;"):
        return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return word


def render(registry: Registry, runjob_path: str) -> dict[str, str]:
    """Unit file name -> content, for every scheduled entry; ConfigError naming each job systemd cannot schedule."""
    files, errors = {}, []
    config = os.path.abspath(registry.path)
    for entry in entries(registry):
        job = entry.job
        try:
            calendar = on_calendar(job.schedule or "", job.timezone)
        except Untranslatable as e:
            errors.append(f"jobs.{job.name}.schedule: systemd cannot express \"{job.schedule}\": {e}")
            continue
        name = unit_name(entry)
        title = " ".join(entry.words) + (f": {job.description}" if job.description else "")
        exec_start = " ".join(_quote(w) for w in [runjob_path, "--config", config, *entry.words])
        files[f"{name}.service"] = (
            f"[Unit]\nDescription=runjob {title}\n\n[Service]\nType=oneshot\nExecStart={exec_start}\n"
            f"TimeoutStartSec={int(run_budget(job)) + 30}\n"
        )
        files[f"{name}.timer"] = (
            f"[Unit]\nDescription=Schedule of runjob {' '.join(entry.words)}\n\n"
            f"[Timer]\nOnCalendar={calendar}\nPersistent=true\nUnit={name}.service\n\n"
            "[Install]\nWantedBy=timers.target\n"
        )
    if errors:
        raise ConfigError(errors, registry.path)
    return files
