"""runjob's cron dialect (cronsim: Debian cron's rules plus L, LW, # and any-case @aliases)
mapped to what each target's own parser reads the same way, or refused with the reason.

- Debian cron (crontab): no L/W/#; @aliases only in lower case; `N/step` needs a range
  (`N-max/step`). It reads 7 as Sunday and ANDs the day fields when one starts with `*`,
  as runjob does.
- robfig/cron v3 (Kubernetes' `spec.schedule`): no L/W/#; day of week 0-6 only (and
  `N/step` there ends at 6, not 7); the day fields are ANDed only when one of them is a
  bare `*` (a step drops robfig's star flag), where cron ANDs when one starts with `*`.

Works on the raw text, field by field, with cronsim's own field parser for the sets of
values, so a translation can only say what runjob means.
"""

from __future__ import annotations

from cronsim.cronsim import Field

from runjob.triggers.cron import ALIASES, expand

DEBIAN_ALIASES = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
FIELDS = (Field.MINUTE, Field.HOUR, Field.DAY, Field.MONTH, Field.DOW)
LIMITS = {Field.MINUTE: 59, Field.HOUR: 23, Field.DAY: 31, Field.MONTH: 12, Field.DOW: 7}
# Marks of cronsim's extensions per day field (not W in day of week: WED has one).
EXTENSIONS = (
    ("day of month", (("L", "L (last)"), ("W", "W (weekday)"))),
    ("day of week", (("L", "L (last)"), ("#", "# (nth weekday)"))),
)


class Untranslatable(ValueError):
    """The target has no spelling with the same fire times; the message says why."""


def _fields(expr: str) -> list[str]:
    parts = expand(expr).split()
    if len(parts) != 5:
        raise Untranslatable(f'"{expr}" is not a 5-field cron expression')
    return parts


def refuse_extensions(parts: list[str], target: str) -> None:
    """Untranslatable when a day field uses L, W or # (none of the targets' parsers reads them)."""
    for text, (name, marks) in zip(parts[2::2], EXTENSIONS, strict=True):
        for mark, what in marks:
            if mark in text.upper():
                raise Untranslatable(
                    f'the {name} "{text}" uses the extension {what}, which {target} has no equivalent for'
                )


def day_and(parts: list[str]) -> bool:
    """Cron (Debian, cronsim) ANDs the day fields when either starts with `*`, else ORs them."""
    return parts[2].startswith("*") or parts[4].startswith("*")


def _range_steps(text: str, field: Field) -> str:
    """`N/step` parts as `N-max/step` (the same values for cronsim; Debian cron needs the range)."""
    out = []
    for part in text.split(","):
        base, sep, step = part.partition("/")
        if sep and base != "*" and "-" not in base:
            part = f"{base}-{LIMITS[field]}/{step}"
        out.append(part)
    return ",".join(out)


def _is_interval(expr: str) -> bool:
    from runjob.triggers.timers import EVERY, kind

    return kind(expr) == EVERY


def every(expr: str) -> str:
    """`@every D` as `*/N` minutes or hours where N divides the hour or the day evenly.

    Cron's `*/N` counts from the top of the hour (or midnight), not from the last start:
    the same rhythm, but not tick's "since the last start". Other intervals: Untranslatable."""
    from runjob.triggers.timers import interval

    seconds = interval(expr)
    minutes, hours = seconds / 60, seconds / 3600
    if minutes == int(minutes) and minutes < 60 and 60 % minutes == 0:
        return "* * * * *" if minutes == 1 else f"*/{int(minutes)} * * * *"
    if hours == int(hours) and 24 % hours == 0:
        return "0 * * * *" if hours == 1 else f"0 */{int(hours)} * * *"
    raise Untranslatable(
        f"the interval {expr.split()[1]} is not a whole number of minutes dividing the hour "
        "or of hours dividing the day, so no `*/N` means it; use `runjob tick` for this job"
    )


def crontab(expr: str) -> str:
    """The schedule as Debian's cron reads it with the same fire times."""
    if _is_interval(expr):
        return every(expr)
    text = " ".join(expr.split())
    if text.startswith("@"):
        if text.lower() in DEBIAN_ALIASES:
            return text.lower()
        return ALIASES[text.lower()]
    parts = _fields(text)
    refuse_extensions(parts, "Debian's cron")
    return " ".join(_range_steps(p, f) for p, f in zip(parts, FIELDS, strict=True))


def _listed(values: set[int]) -> str:
    """Sorted values, runs of three or more as a-b."""
    ordered, out, i = sorted(values), [], 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out += [f"{ordered[i]}-{ordered[j]}"] if j - i >= 2 else [str(v) for v in ordered[i : j + 1]]
        i = j + 1
    return ",".join(out)


def _robfig_star(text: str) -> bool:
    """robfig's star flag: some part is a bare `*` or `?` (or `*/1`); a longer step drops it."""
    return any(p.split("/")[0] in ("*", "?") and p.split("/")[1:] in ([], ["1"]) for p in text.split(","))


def _weekdays(text: str) -> str:
    """The day-of-week field in robfig's 0-6 (Sunday 0): kept when robfig reads it the same."""
    same = not any(c in text for c in "7/") and not _robfig_star(text)
    return text if same or text == "*" else _listed({v % 7 for v in Field.DOW.parse(text.upper())})  # type: ignore[operator]


def kubernetes(expr: str) -> str:
    """The schedule as robfig/cron v3 (ParseStandard) reads it with the same fire times."""
    if _is_interval(expr):
        return every(expr)  # robfig's own @every counts from the controller's start: use the cron form
    parts = _fields(expr)
    refuse_extensions(parts, "Kubernetes (robfig/cron)")
    dom, dow = parts[2], _weekdays(parts[4])
    full_dom = Field.DAY.parse(dom) == set(range(1, 32))
    full_dow = {v % 7 for v in Field.DOW.parse(parts[4].upper())} == set(range(7))  # type: ignore[operator]
    if day_and(parts):
        # robfig ANDs only beside a bare `*`: give it one where a field allows every day.
        if full_dom:
            dom = "*"
        elif full_dow:
            dow = "*"
        else:
            raise Untranslatable(
                f'cron runs "{dom} ... {parts[4]}" when day of month AND day of week match (a field starts '
                "with *), robfig/cron when either does; no Kubernetes schedule means the same"
            )
    else:
        dom = dom if not _robfig_star(dom) else _listed(Field.DAY.parse(dom))  # type: ignore[arg-type]
    return " ".join([*parts[:2], dom, parts[3], dow])
