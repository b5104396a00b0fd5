"""A child's line that is one JSON object, read defensively (SPEC sections 4 and 12).

Whatever the line holds, reading it never raises: nesting deeper than MAX_DEPTH, NaN or
Infinity literals, numbers too large for a float (`1e999`) and lone surrogates (`\\ud800`)
either come out as strict-JSON-safe values or make the line a plain `line` again.
Loaded only when a line starts with `{`.
"""

from __future__ import annotations

import json
import math

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAX_DEPTH = 32
MESSAGE_KEYS = ("message", "msg", "event")  # structlog puts the text under "event"
LEVEL_KEYS = ("level", "levelname", "level_name", "severity")  # python-json-logger, Monolog, Google Cloud Logging
LEVELS = {
    "trace": "debug",
    "debug": "debug",
    "info": "info",
    "information": "info",
    "notice": "info",
    "warn": "warning",
    "warning": "warning",
    "error": "error",
    "err": "error",
    "critical": "critical",
    "crit": "critical",
    "fatal": "critical",
    "alert": "critical",
    "emergency": "critical",
    "emerg": "critical",
    "panic": "critical",
}


class _Refused(Exception):
    pass


def _number(text: str) -> float | str:
    """A JSON number that does not fit a float stays its text: records have no infinity."""
    value = float(text)
    return value if math.isfinite(value) else text


def _constant(text: str) -> str:
    return text  # NaN, Infinity, -Infinity: not JSON; kept as the child's text


_decoder = json.JSONDecoder(parse_float=_number, parse_constant=_constant)


def parse(line: str) -> dict[str, Any] | None:
    """The line as a dict if it is one JSON object runjob can keep, else None."""
    if not line.startswith("{") or line.count("{") + line.count("[") > 100_000:
        return None
    try:
        value = _decoder.decode(line)
        return _clean(value, 0) if isinstance(value, dict) else None
    except (ValueError, RecursionError, _Refused):
        return None


def _clean(value: Any, depth: int) -> Any:
    """`value` with lone surrogates replaced and ints too big for JSON readers kept; deeper
    than MAX_DEPTH refuses the whole line."""
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, dict):
        if depth >= MAX_DEPTH:
            raise _Refused
        return {_text(k): _clean(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        if depth >= MAX_DEPTH:
            raise _Refused
        return [_clean(v, depth + 1) for v in value]
    return value


def _text(text: str) -> str:
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a \\udXXX escape
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")  # U+FFFD
    return text


def message_of(data: dict[str, Any]) -> str:
    """The first string among `message`, `msg`, `event`; "" if none."""
    for key in MESSAGE_KEYS:
        value = data.get(key)
        if isinstance(value, str):
            return value
    return ""


def level_of(data: dict[str, Any]) -> str:
    """The record level from the child's `level`, `levelname` or `severity` (first present
    with a known name, any case); "info" otherwise."""
    for key in LEVEL_KEYS:
        value = data.get(key)
        if isinstance(value, str) and value.lower() in LEVELS:
            return LEVELS[value.lower()]
    return "info"
