"""JSON log records (SPEC section 4): one object per line, common fields first.

Records are encoded here with the C encoder the json module itself uses, in the exact
form python-json-logger's JsonFormatter gives them (same field order, separators and
escaping): tests/test_records.py formats the same records through JsonFormatter and
checks the bytes are identical. We do not call JsonFormatter at run time because
importing it (with logging, dataclasses, inspect, typing) costs about 70 ms on these
hosts, several times runjob's whole start-up; and we call `_json` directly rather than
`json`, whose import compiles regexes (`re` and `enum`: ~8 ms here).

Output lines of the child are the hot path (millions of lines): `encode_output` builds
them from a per-stream prefix and json's C string escaper, one list comprehension per
chunk read, with the same bytes as `encode`.
"""

from __future__ import annotations

import os
import time

from runjob.errors import InternalError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Protocol

    class Sink(Protocol):
        def record(self, fields: dict[str, Any]) -> None: ...
        def output(self, common: dict[str, Any], stream: str, lines: list[str], attempt: int) -> None: ...
        def output_plain(self, common: dict[str, Any], stream: str, lines: list[bytes], attempt: int) -> None: ...
        def close(self) -> None: ...


COMMON = ("timestamp", "level", "event", "message", "job", "run_id", "correlation_id", "host", "pid")
MAX_LINE = 64 * 1024



def _no_default(value: object) -> object:
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _c_encoder() -> tuple[Any, Any]:
    """json.dumps(ensure_ascii=False) built from the same C parts, checked; else json's own."""
    try:
        from _json import encode_basestring, make_encoder  # type: ignore[attr-defined]

        # The arguments json.encoder.JSONEncoder.iterencode passes (CPython 3.11-3.13).
        encoder = make_encoder(None, _no_default, encode_basestring, None, ": ", ", ", False, False, True)

        def dumps(obj: object) -> str:
            return "".join(encoder(obj, 0))

        if dumps({"a": [1, 1.5, None, True, "\u00e9\n\""]}) == '{"a": [1, 1.5, null, true, "\u00e9\\n\\""]}':
            return dumps, encode_basestring
    except (ImportError, TypeError, ValueError):
        pass
    import json
    from json.encoder import encode_basestring as escape  # type: ignore[attr-defined]

    return json.JSONEncoder(ensure_ascii=False).encode, escape


_dumps, encode_basestring = _c_encoder()


def timestamp(t: float | None = None) -> str:
    """RFC 3339, UTC, milliseconds: 2026-11-23T15:40:00.123Z."""
    t = time.time() if t is None else t
    ms = int(t * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % ms


def encode(fields: dict[str, Any]) -> str:
    return _dumps(fields)


def new_run_id() -> str:
    """A UUID4 string, from os.urandom (the uuid module costs ~4 ms to import)."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40  # version 4
    b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class Records:
    """Builds the records of one run: common fields, then the event's own."""

    def __init__(self, sink: Sink, job: str, run_id: str, correlation_id: str | None = None) -> None:
        self.sink = sink
        self.common: dict[str, Any] = {
            "job": job,
            "run_id": run_id,
            "correlation_id": correlation_id or run_id,
            "host": os.uname().nodename,
            "pid": os.getpid(),
        }

    def emit(self, event: str, message: str, level: str = "info", **extra: Any) -> dict[str, Any]:
        fields: dict[str, Any] = {"timestamp": timestamp(), "level": level, "event": event, "message": message}
        fields.update(self.common)
        fields.update(extra)
        self.sink.record(fields)
        return fields


def output_pieces(common: dict[str, Any], stream: str, attempt: int) -> tuple[str, str, str]:
    """The constant text around timestamp, message and line of one stream's run.output records."""
    mid = "".join(f", {_dumps(k)}: {_dumps(common[k])}" for k in COMMON[4:])
    return (
        ', "level": "info", "event": "run.output", "message": ',
        mid + f', "stream": "{stream}", "line": ',
        f', "attempt": {attempt}}}',
    )


def encode_output(pieces: tuple[str, str, str], lines: list[str], ts: str) -> str:
    """run.output records for plain text lines, newline-terminated, ready to write.

    Built by C-level list operations and one join (no per-line concatenation): every
    record is head, line, mid, line, tail, with the line JSON-escaped once.
    """
    quoted = list(map(encode_basestring, lines))
    parts = ['{"timestamp": "' + ts + '"' + pieces[0], "", pieces[1], "", pieces[2] + "\n"] * len(quoted)
    parts[1::5] = quoted  # the message
    parts[3::5] = quoted  # the line
    return "".join(parts)


def plain_output_parts(pieces: tuple[str, str, str], lines: list[bytes], ts: str) -> list[bytes]:
    """encode_output for lines known to need no JSON escaping (printable ASCII without
    quotes or backslashes; see output.is_plain), as the pieces to write: the same bytes,
    with no decode, escape, encode, or joining copy (they go out with writev)."""
    head = ('{"timestamp": "' + ts + '"' + pieces[0] + '"').encode()
    parts = [head, b"", ('"' + pieces[1] + '"').encode(), b"", ('"' + pieces[2] + "\n").encode()] * len(lines)
    parts[1::5] = lines
    parts[3::5] = lines
    return parts


RECORDS_PER_WRITEV = 204  # 5 parts each: 1020 iovecs, under IOV_MAX (1024)


def writev_records(fd: int, parts: list[bytes], lines: list[bytes]) -> None:
    """Write plain_output_parts(...) with writev, in batches of whole records. A record is
    its line twice plus fixed text, so a batch's size comes from the line lengths (summing
    every part's length cost as much as the writev). A short write (a signal on a pipe) is
    finished by write_all."""
    fixed = len(parts[0]) + len(parts[2]) + len(parts[4]) if parts else 0
    sizes = list(map(len, lines))
    for first in range(0, len(lines), RECORDS_PER_WRITEV):
        batch = parts[5 * first : 5 * (first + RECORDS_PER_WRITEV)]
        count = len(batch) // 5
        written = os.writev(fd, batch)
        if written < fixed * count + 2 * sum(sizes[first : first + count]):
            write_all(fd, b"".join(batch)[written:])


def write_all(fd: int, data: bytes) -> None:
    """os.write until everything is written (pipes take partial writes)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class JsonSink:
    """JSON lines to stdout or to a file opened with O_APPEND (whole lines per write)."""

    def __init__(self, path: str = "") -> None:
        self.path = path or "<stdout>"
        self.fd = 1
        self.failed: str | None = None
        self.pieces: dict[tuple[str, int], tuple[str, str, str]] = {}
        if path:
            try:
                os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
                flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW  # SPEC 12: no symlinks
                self.fd = os.open(path, flags, 0o600)
            except OSError as e:
                raise InternalError(f"cannot open log file {path}: {e.strerror}") from None

    def record(self, fields: dict[str, Any]) -> None:
        self.write(encode(fields) + "\n")

    def output(self, common: dict[str, Any], stream: str, lines: list[str], attempt: int) -> None:
        if not self.failed:  # after a write failure records are dropped: do not build them
            self.write(encode_output(self._pieces(common, stream, attempt), lines, timestamp()))

    def output_plain(self, common: dict[str, Any], stream: str, lines: list[bytes], attempt: int) -> None:
        if self.failed:
            return
        parts = plain_output_parts(self._pieces(common, stream, attempt), lines, timestamp())
        try:
            writev_records(self.fd, parts, lines)
        except OSError as e:
            self._lost(e)

    def _pieces(self, common: dict[str, Any], stream: str, attempt: int) -> tuple[str, str, str]:
        key = (stream, attempt)
        if key not in self.pieces:  # one sink serves one run, so `common` never changes under the key
            self.pieces[key] = output_pieces(common, stream, attempt)
        return self.pieces[key]

    def write(self, text: str) -> None:
        self.write_bytes(text.encode("utf-8", "surrogateescape"))

    def write_bytes(self, data: bytes) -> None:
        if self.failed:
            return
        try:
            write_all(self.fd, data)
        except OSError as e:
            self._lost(e)

    def _lost(self, e: OSError) -> None:
        # The job goes on and its exit code stays true; we say once that records are lost.
        self.failed = f"runjob: cannot write records to {self.path}: {e.strerror}; further records are lost"
        os.write(2, (self.failed + "\n").encode())

    def close(self) -> None:
        if self.fd > 2:
            os.close(self.fd)
            self.fd = -1


class TeeSink:
    """Several sinks at once (JSON to a log file and the terminal view, say)."""

    def __init__(self, *sinks: Sink) -> None:
        self.sinks = sinks

    def record(self, fields: dict[str, Any]) -> None:
        for s in self.sinks:
            s.record(fields)

    def output(self, common: dict[str, Any], stream: str, lines: list[str], attempt: int) -> None:
        for s in self.sinks:
            s.output(common, stream, lines, attempt)

    def output_plain(self, common: dict[str, Any], stream: str, lines: list[bytes], attempt: int) -> None:
        self.output(common, stream, [line.decode() for line in lines], attempt)

    def close(self) -> None:
        for s in self.sinks:
            s.close()
