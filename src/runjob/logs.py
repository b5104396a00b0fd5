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


TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Protocol

    class Sink(Protocol):
        def record(self, fields: dict[str, Any]) -> None: ...
        def output(self, common: dict[str, Any], stream: str, lines: list[str], attempt: int) -> None: ...
        def output_plain(self, common: dict[str, Any], stream: str, lines: list[bytes], attempt: int) -> None: ...
        def close(self) -> None: ...


COMMON = ("timestamp", "level", "event", "message", "job", "run_id", "correlation_id", "host", "pid")
RECORD_MAX = 16 * 1024  # a record, newline included, at most this (container runtimes split at 16 KiB)
MESSAGE_PREFIX = 80  # a run.output record's message: the first characters of its line


def _no_default(value: object) -> object:
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _c_encoder() -> tuple[Any, Any]:
    """json.dumps(ensure_ascii=False) built from the same C parts, checked; else json's own."""
    try:
        from _json import encode_basestring, make_encoder  # type: ignore[attr-defined]

        # The arguments json.encoder.JSONEncoder.iterencode passes (CPython 3.11-3.13).
        # allow_nan=False: records are strict JSON; a NaN or infinity raises and the record
        # is made safe by record_size.sanitize (see JsonSink.record).
        encoder = make_encoder(None, _no_default, encode_basestring, None, ": ", ", ", False, False, False)

        def dumps(obj: object) -> str:
            return "".join(encoder(obj, 0))

        if dumps({"a": [1, 1.5, None, True, "\u00e9\n\""]}) == '{"a": [1, 1.5, null, true, "\u00e9\\n\\""]}':
            return dumps, encode_basestring
    except (ImportError, TypeError, ValueError):
        pass
    import json
    from json.encoder import encode_basestring as escape  # type: ignore[attr-defined]

    return json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode, escape


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
    """Builds the records of one run: common fields, `seq` (filled in by the sink that
    writes the record, in write order), then the event's own."""

    def __init__(self, sink: Sink, job: str, run_id: str, correlation_id: str | None = None,
                 secrets: list[str] | None = None) -> None:  # fmt: skip
        self.sink = sink
        self.redactor: Any = None
        if secrets:  # every record of the run is masked, whatever field a value reached
            from runjob.redact import Redactor

            self.redactor = Redactor(secrets)
        self.common: dict[str, Any] = {
            "job": job,
            "run_id": run_id,
            "correlation_id": correlation_id or run_id,
            "host": os.uname().nodename,
            "pid": os.getpid(),
        }

    def emit(self, event: str, message: str, level: str = "info", **extra: Any) -> dict[str, Any]:
        if self.redactor:
            message, extra = self.redactor.text(message), self.redactor.value(extra)
        fields: dict[str, Any] = {"timestamp": timestamp(), "level": level, "event": event, "message": message}
        fields.update(self.common)
        fields["seq"] = None  # its place among the fields; the JSON sink numbers it
        fields.update(extra)
        self.sink.record(fields)
        return fields


def output_pieces(common: dict[str, Any], stream: str, attempt: int) -> tuple[str, str, str]:
    """The constant text of one stream's run.output records: before the message, between
    the message and the line (with a `%d` for seq), after the line."""
    mid = "".join(f", {_dumps(k)}: {_dumps(common[k])}" for k in COMMON[4:]).replace("%", "%%")
    return (
        ', "level": "info", "event": "run.output", "message": ',
        mid + f', "seq": %d, "stream": "{stream}", "line": ',
        f', "attempt": {attempt}}}',
    )


def _messages(lines: list[Any], longest: int) -> list[Any]:
    """Each line's message: its first MESSAGE_PREFIX characters (the lines themselves when
    none is longer, the common case, with no per-line work)."""
    return lines if longest <= MESSAGE_PREFIX else [line[:MESSAGE_PREFIX] for line in lines]


def encode_output(
    pieces: tuple[str, str, str], lines: list[str], ts: str, seq: int, quoted: list[str] | None = None
) -> str:
    """run.output records for text lines, newline-terminated, ready to write.

    Built by C-level list operations and one join (no per-line concatenation): every
    record is head, message (a prefix of the line), mid (with its seq), line, tail.
    """
    quoted = list(map(encode_basestring, lines)) if quoted is None else quoted
    longest = max(map(len, lines), default=0)
    parts = ['{"timestamp": "' + ts + '"' + pieces[0], "", "", "", pieces[2] + "\n"] * len(quoted)
    parts[1::5] = quoted if longest <= MESSAGE_PREFIX else map(encode_basestring, _messages(lines, longest))
    parts[2::5] = map(pieces[1].__mod__, range(seq, seq + len(lines)))
    parts[3::5] = quoted
    return "".join(parts)


_TABLES: dict[bytes, tuple[list[bytes], list[bytes]]] = {}


def _tables(after: bytes) -> tuple[list[bytes], list[bytes]]:
    """seq 0-999, and the last three digits of a larger seq, each followed by `after`
    (the text up to the line). Built on first output, not at import: start-up is
    benchmarked; one pair per stream and attempt."""
    if after not in _TABLES:
        _TABLES[after] = ([b"%d%s" % (n, after) for n in range(1000)], [b"%03d%s" % (n, after) for n in range(1000)])
    return _TABLES[after]


def _seq_parts(before: bytes, after: bytes, first: int, count: int) -> tuple[list[bytes], list[bytes]]:
    """For seq first..first+count-1: `before` plus seq's leading digits (one object per
    thousand), and its last three digits plus `after` (from a table). List slicing and
    repetition only: a per-record format costs more than all the rest of a record."""
    heads: list[bytes] = []
    tails: list[bytes] = []
    n, end = first, first + count
    while n < end:
        upto = min(end, (n // 1000 + 1) * 1000)
        heads += [before + (b"%d" % (n // 1000) if n >= 1000 else b"")] * (upto - n)
        tails += _tables(after)[n >= 1000][n % 1000 : (upto - 1) % 1000 + 1]
        n = upto
    return heads, tails


def plain_output_parts(pieces: tuple[str, str, str], lines: list[bytes], ts: str, seq: int,
                       longest: int | None = None) -> list[bytes]:  # fmt: skip
    """encode_output for lines known to need no JSON escaping (printable ASCII without
    quotes or backslashes; see output.is_plain), as the pieces to write: the same bytes,
    with no decode, escape, encode, or joining copy (they go out with writev). Six parts
    a record: head, message, text up to seq's last three digits, those and the text up
    to the line, line, tail."""
    head = ('{"timestamp": "' + ts + '"' + pieces[0] + '"').encode()
    before, after = ('"' + pieces[1] + '"').replace("%%", "%").encode().split(b"%d")
    parts = [head, b"", b"", b"", b"", ('"' + pieces[2] + "\n").encode()] * len(lines)
    parts[1::6] = _messages(lines, max(map(len, lines), default=0) if longest is None else longest)
    parts[2::6], parts[3::6] = _seq_parts(before, after, seq, len(lines))
    parts[4::6] = lines
    return parts


RECORDS_PER_WRITEV = 170  # 6 parts each: 1020 iovecs, under IOV_MAX (1024)
PARTS = 6


def _digits(first: int, end: int) -> int:
    """How many decimal digits the numbers first..end-1 have together."""
    total, n = 0, first
    while n < end:
        width = len(str(n))
        upto = min(end, 10**width)
        total, n = total + (upto - n) * width, upto
    return total


def writev_records(fd: int, parts: list[bytes], sizes: list[int], messages_are_lines: bool, seq: int) -> None:
    """Write plain_output_parts(...) with writev, in batches of whole records. A record is
    fixed text, its message, its line and its seq, so a batch's length comes from the line
    lengths (summing every part's length would cost more than the writev); a short write
    (a signal on a pipe, a non-blocking fd) is finished by write_all."""
    fixed = sum(map(len, parts[:PARTS])) - sizes[0] - len(parts[1]) - _digits(seq, seq + 1) if parts else 0
    for first in range(0, len(sizes), RECORDS_PER_WRITEV):
        last = min(len(sizes), first + RECORDS_PER_WRITEV)
        batch = parts[PARTS * first : PARTS * last]
        written = os.writev(fd, batch)
        lines = sum(sizes[first:last])
        messages = lines if messages_are_lines else sum(map(len, batch[1::PARTS]))
        if written < fixed * (last - first) + lines + messages + _digits(seq + first, seq + last):
            write_all(fd, b"".join(batch)[written:])


def write_all(fd: int, data: bytes) -> None:
    """os.write until everything is written (pipes take partial writes)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def record_max() -> int:
    """The record size limit: RUNJOB_RECORD_MAX bytes if set (at least 1024), else 16 KiB."""
    text = os.environ.get("RUNJOB_RECORD_MAX", "")
    if text.isdigit() and int(text) >= 1024:
        return int(text)
    return RECORD_MAX


class JsonSink:
    """JSON lines to stdout or to a log file (O_APPEND: each write is whole records)."""

    def __init__(self, path: str = "") -> None:
        self.path = path or "<stdout>"
        self.fd = 1
        self.failed: str | None = None
        self.seq = 0
        self.limit = record_max()
        self.pieces: dict[tuple[str, int], tuple[str, str, str]] = {}
        self.log: Any = None
        if path:
            from runjob.logfile import LogFile

            self.log = LogFile(path)
            self.fd = self.log.fd

    def record(self, fields: dict[str, Any]) -> None:
        if "seq" in fields:
            fields["seq"] = self.seq
        self.seq += 1
        try:
            data = (encode(fields) + "\n").encode()
        except (ValueError, UnicodeError, RecursionError):  # NaN, infinity, a lone surrogate
            from runjob.record_size import sanitize

            fields = sanitize(fields)
            data = (encode(fields) + "\n").encode()
        if len(data) > self.limit:
            from runjob.record_size import shrink

            data = shrink(fields, self.limit, encode)
        self._reopen_if_moved()
        self.write_bytes(data)

    def output(self, common: dict[str, Any], stream: str, lines: list[str], attempt: int) -> None:
        if self.failed:  # after a write failure records are dropped: do not build them
            return
        pieces = self._pieces(common, stream, attempt)
        quoted = list(map(encode_basestring, lines))
        room = self._line_room(pieces)
        # A character is at most 4 bytes in UTF-8: only long lines need their bytes counted.
        if max(map(len, quoted)) > room // 4 and any(len(q.encode()) > room for q in quoted):
            from runjob.record_size import output_one_by_one

            output_one_by_one(self, common, stream, lines, attempt)
            return
        self.seq += len(lines)
        self.write(encode_output(pieces, lines, timestamp(), self.seq - len(lines), quoted))

    def output_plain(self, common: dict[str, Any], stream: str, lines: list[bytes], attempt: int) -> None:
        if self.failed:
            return
        pieces = self._pieces(common, stream, attempt)
        sizes = list(map(len, lines))
        longest = max(sizes)
        if longest > self._line_room(pieces):
            self.output(common, stream, [line.decode() for line in lines], attempt)
            return
        parts = plain_output_parts(pieces, lines, timestamp(), self.seq, longest)
        seq, self.seq = self.seq, self.seq + len(lines)
        try:
            writev_records(self.fd, parts, sizes, longest <= MESSAGE_PREFIX, seq)
        except OSError as e:
            self._lost(e)

    def _line_room(self, pieces: tuple[str, str, str]) -> int:
        """The longest escaped line for which a run.output record surely fits the limit
        (the message prefix counted at its worst, six bytes a character)."""
        return self.limit - (60 + sum(map(len, pieces)) + 6 * MESSAGE_PREFIX + 24)

    def _pieces(self, common: dict[str, Any], stream: str, attempt: int) -> tuple[str, str, str]:
        key = (stream, attempt)
        if key not in self.pieces:  # one sink serves one run, so `common` never changes under the key
            self.pieces[key] = output_pieces(common, stream, attempt)
        return self.pieces[key]

    def _reopen_if_moved(self) -> None:
        if self.log is not None and not self.failed:
            self.fd = self.log.reopen_if_moved()

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
        # A torn record in a log file is ended by the next run (LogFile starts a new line).
        self.failed = f"runjob: cannot write records to {self.path}: {e.strerror}; further records are lost"
        os.write(2, (self.failed + "\n").encode())

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
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
