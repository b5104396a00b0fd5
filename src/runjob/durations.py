"""Durations as the registry writes them: "250ms", "0.5s", "90s", "15m", "1h30m", "2d", or seconds.

Every duration is finite and at most MAX_S (365 days): a larger value is a typo, and
NaN, infinity or 1e300 would only fail later, after the child started (an overflowing
poll() or sleep), when nothing can report it as a configuration error.
"""

from __future__ import annotations

import math
import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d{1,12}(?:\.\d{1,9})?)(ms|s|m|h|d)")
_WHOLE = re.compile(r"(?:\d{1,12}(?:\.\d{1,9})?(?:ms|s|m|h|d))+")
MAX_S = 365 * 86400.0
MAX_TEXT = "365d"


def parse_duration(value: object) -> float:
    """Seconds in `value`; raises ValueError with a readable reason."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration, got {value!r}")
    if isinstance(value, (int, float)):
        # An integer too large for a float is only too long (or negative), never an OverflowError.
        big = isinstance(value, int) and abs(value) >= 10**16
        return _bounded((1e300 if value > 0 else -1e300) if big else float(value), value)
    if not isinstance(value, str):
        raise ValueError(f"expected a duration, got {type(value).__name__}")
    text = value.strip()
    if len(text) > 100 or _WHOLE.fullmatch(text) is None:
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise ValueError(f'bad duration "{shown}" (use e.g. "250ms", "90s", "15m", "1h30m", "2d")')
    return _bounded(sum(float(n) * _UNITS[u] for n, u in _PART.findall(text)), value)


def flag(text: str | None, name: str) -> float | None:
    """A command-line duration option (`--timeout 10m`): seconds, None when not given; a bad
    value is a usage error (exit 2) naming the option."""
    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as e:
        from runjob.errors import UsageError

        raise UsageError(f"{name}: {e}") from None


def _bounded(seconds: float, value: object) -> float:
    shown = repr(value)[:40]
    if not math.isfinite(seconds):
        raise ValueError(f"duration must be a finite number, got {shown}")
    if seconds < 0:
        raise ValueError(f"duration must not be negative, got {shown}")
    if seconds > MAX_S:
        raise ValueError(f"duration {shown} is longer than the limit of {MAX_TEXT}")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest exact spelling of `seconds` in the registry's syntax."""
    if seconds != int(seconds):
        return f"{round(seconds * 1000)}ms"
    rest, out = int(seconds), ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            out += f"{rest // size}{unit}"
            rest %= size
    return out or "0s"
