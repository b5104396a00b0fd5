"""Durations as the registry writes them: "250ms", "0.5s", "90s", "15m", "1h30m", "2d", or seconds."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")


def parse_duration(value: object) -> float:
    """Seconds in `value`; raises ValueError with a readable reason."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration, got {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"duration must not be negative, got {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a duration, got {type(value).__name__}")
    text = value.strip()
    if _WHOLE.fullmatch(text) is None:
        raise ValueError(f'bad duration "{value}" (use e.g. "250ms", "90s", "15m", "1h30m", "2d")')
    return sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))


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
