"""Records that would break a reader, made safe: strict JSON and at most the size limit.

Rare paths only (a NaN, a lone surrogate, an over-long record), so `sink` imports this
module when it needs it. A value is never dropped silently: a cut field keeps its start
(`stderr_tail` its end) and the record gets `"truncated": true`.
"""

from __future__ import annotations

import math

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

MAX_DEPTH = 64
KEEP_END = ("stderr_tail",)  # fields whose end matters more than their start
FIXED = ("timestamp", "level", "event", "job", "run_id", "correlation_id", "host", "pid", "seq")


def sanitize(value: Any, depth: int = 0) -> Any:
    """`value` as strict JSON can hold it: NaN and infinities as strings ("inf"), lone
    surrogates as U+FFFD, anything nested deeper than MAX_DEPTH as a short string."""
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace") if _has_surrogate(value) else value
    if depth >= MAX_DEPTH and isinstance(value, (dict, list, tuple)):
        return "(nested too deep)"
    if isinstance(value, dict):
        return {sanitize(str(k), depth + 1): sanitize(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [sanitize(v, depth + 1) for v in value]
    return value


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def shrink(fields: dict[str, Any], limit: int, encode: Callable[[Any], str]) -> bytes:
    """The record cut to `limit` bytes (newline included): the longest free field is cut
    (or, if not a string, replaced by a prefix of its JSON) until it fits."""
    fields = dict(fields)
    fields["truncated"] = True
    for _ in range(16):
        data = (encode(fields) + "\n").encode()
        excess = len(data) - limit
        if excess <= 0:
            return data
        key = max((k for k in fields if k not in FIXED), key=lambda k: _size(fields[k], encode), default=None)
        if key is None:
            break
        fields[key] = _cut(fields[key], key, excess, encode)
    fields = {k: fields[k] for k in FIXED if k in fields} | {"message": "(record too large)", "truncated": True}
    return (encode(fields) + "\n").encode()


def _size(value: Any, encode: Callable[[Any], str]) -> int:
    return len(value) if isinstance(value, str) else len(encode(value).encode())


def _cut(value: Any, key: str, excess: int, encode: Callable[[Any], str]) -> str:
    """A shorter string for `value`: at least `excess` bytes shorter once encoded."""
    text = value if isinstance(value, str) else encode(value)
    encoded = len(encode(text).encode())
    # Escapes can make a character up to 6 bytes: cut in proportion, with a margin.
    keep = max(0, int(len(text) * (encoded - excess - 16) / max(encoded, 1)))
    return text[len(text) - keep :] if key in KEEP_END else text[:keep]


def fit_line(line: str, room: int, escape: Callable[[str], str]) -> str:
    """The longest prefix of `line` (found in a few proportional cuts) whose JSON string
    is at most `room` bytes."""
    size = len(escape(line).encode())
    while size > room and line:
        line = line[: max(0, min(len(line) - 1, int(len(line) * room / size)))]
        size = len(escape(line).encode())
    return line
