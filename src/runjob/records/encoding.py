"""The JSON encoder of records, their timestamps and their size limit.

Records are encoded with the C encoder the json module itself uses, in the exact form
python-json-logger's JsonFormatter gives them (same field order, separators and
escaping): tests/test_records.py formats the same records through JsonFormatter and
checks the bytes are identical. We do not call JsonFormatter at run time because
importing it (with logging, dataclasses, inspect, typing) costs about 70 ms on these
hosts, several times runjob's whole start-up; and we call `_json` directly rather than
`json`, whose import compiles regexes (`re` and `enum`: ~8 ms here).
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

COMMON = ("timestamp", "level", "event", "message", "job", "run_id", "correlation_id", "host", "pid")
RECORD_MAX = 16 * 1024  # a record, newline included, at most this (container runtimes split at 16 KiB)
MESSAGE_PREFIX = 80  # a run.output record's message: the first characters of its line


def _no_default(value: object) -> object:
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _c_encoder() -> tuple[Callable[[object], str], Callable[[str], str]]:
    """json.dumps(ensure_ascii=False) built from the same C parts, checked; else json's own."""
    try:
        from _json import encode_basestring, make_encoder

        # The arguments json.encoder.JSONEncoder.iterencode passes (CPython 3.11-3.13).
        # allow_nan=False: records are strict JSON; a NaN or infinity raises and the record
        # is made safe by record_size.sanitize (see JsonSink.record).
        encoder = make_encoder(None, _no_default, encode_basestring, None, ": ", ", ", False, False, False)

        def dumps(obj: object) -> str:
            return "".join(encoder(obj, 0))

        if dumps({"a": [1, 1.5, None, True, '\u00e9\n"']}) == '{"a": [1, 1.5, null, true, "\u00e9\\n\\""]}':
            return dumps, encode_basestring
    except (ImportError, TypeError, ValueError):
        pass
    import json
    from json.encoder import encode_basestring as escape

    return json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode, escape


dumps, encode_basestring = _c_encoder()

_second: list[Any] = [-1, ""]  # the last whole second formatted, and its text


def timestamp(t: float | None = None) -> str:
    """RFC 3339, UTC, milliseconds: 2026-11-23T15:40:00.123Z. The text up to the second is
    formatted once a second (output records ask for one per chunk read)."""
    t = time.time() if t is None else t
    whole = int(t)
    if whole != _second[0]:
        _second[0], _second[1] = whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    return f"{_second[1]}.{int(t * 1000) % 1000:03d}Z"


def encode(fields: dict[str, Any]) -> str:
    return dumps(fields)


def record_max() -> int:
    """The record size limit: RUNJOB_RECORD_MAX bytes if set (at least 1024), else 16 KiB."""
    text = os.environ.get("RUNJOB_RECORD_MAX", "")
    if text.isdigit() and int(text) >= 1024:
        return int(text)
    return RECORD_MAX
