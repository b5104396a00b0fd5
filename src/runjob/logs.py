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
import stat  # already loaded by os: costs nothing
import time

from runjob.errors import InternalError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
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


def writev_records(fd: int, parts: list[bytes], lines: list[bytes],
                   rest: Callable[[int, bytes], None] | None = None) -> None:  # fmt: skip
    """Write plain_output_parts(...) with writev, in batches of whole records. A record is
    its line twice plus fixed text, so a batch's size comes from the line lengths (summing
    every part's length cost as much as the writev). What a short write (a signal on a
    pipe, a full non-blocking pipe) leaves goes to `rest` (default: write_all), in order."""
    fixed = len(parts[0]) + len(parts[2]) + len(parts[4]) if parts else 0
    sizes = list(map(len, lines))
    for first in range(0, len(lines), RECORDS_PER_WRITEV):
        batch = parts[5 * first : 5 * (first + RECORDS_PER_WRITEV)]
        count = len(batch) // 5
        try:
            written = os.writev(fd, batch)
        except BlockingIOError:
            written = 0
        if written < fixed * count + 2 * sum(sizes[first : first + count]):
            (rest or write_all)(fd, b"".join(batch)[written:] + b"".join(parts[5 * (first + RECORDS_PER_WRITEV) :]))
            return


def write_all(fd: int, data: bytes) -> None:
    """os.write until everything is written (pipes take partial writes)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


# Records waiting for a slow stdout reader (a pipe's worth); above it the child's pipes are not read.
PENDING_MAX = 1 << 16
PIPE_SIZE = 1 << 20
FINAL_FLUSH_S = 5.0  # at the end, how long we wait for a stalled stdout reader before dropping the rest


def _stdout_fd() -> tuple[int, bool]:
    """(fd for records on stdout, non-blocking?). A pipe is opened a second time, non-blocking
    (its own open file description, so the O_NONBLOCK is not shared with whoever else holds
    the pipe): a reader that stalls must never block the supervise loop (see process.py)."""
    try:
        if stat.S_ISFIFO(os.fstat(1).st_mode):
            return os.open("/proc/self/fd/1", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC), True
    except OSError:
        pass  # no /proc: blocking writes, as to a file or a terminal
    return 1, False


def _grow_pipe(fd: int) -> None:
    """Up to 1 MiB of pipe buffer (the unprivileged limit), once the pipe first fills: a
    reader that takes big reads then wakes us far less often than with the default 64 KiB
    (fewer polls, bigger writes; as fast as blocking writes were). Quick runs never grow it."""
    import fcntl  # loaded already by lock.py on the run path

    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except (OSError, AttributeError):
        pass  # a smaller pipe only costs wake-ups


class JsonSink:
    """JSON lines to stdout or to a file opened with O_APPEND (whole lines per write).

    With `nonblocking` (a run, whose supervise loop must never wait on a reader), records
    to a pipe are written without blocking: what the pipe does not take waits in
    `pending` (in order), flushed when the pipe has room (process.py polls for it and stops
    reading the child while `pending` is over PENDING_MAX), and at close for FINAL_FLUSH_S.
    """

    def __init__(self, path: str = "", nonblocking: bool = False) -> None:
        self.path = path or "<stdout>"
        self.fd = 1
        self.nonblocking = False
        self.pending = bytearray()
        self.grown = False  # the pipe's buffer enlarged (_grow_pipe)
        self.failed: str | None = None
        self.pieces: dict[tuple[str, int], tuple[str, str, str]] = {}
        if not path:
            self.fd, self.nonblocking = _stdout_fd() if nonblocking else (1, False)
        else:
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
        if self.pending:  # behind earlier records: keep the order
            self.pending += b"".join(parts)
            return
        try:
            writev_records(self.fd, parts, lines, self._rest)
        except OSError as e:
            self._lost(e)

    def _rest(self, fd: int, data: bytes) -> None:
        if self.nonblocking:
            self._wait(data)
        else:
            write_all(fd, data)

    def _wait(self, data: bytes) -> None:
        """`data` waits for the pipe to take it."""
        if not self.grown:
            self.grown = True
            _grow_pipe(self.fd)
        self.pending += data

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
        if self.pending:  # behind earlier records: keep the order
            self.pending += data
            return
        try:
            if not self.nonblocking:
                write_all(self.fd, data)
                return
            written = os.write(self.fd, data)
        except BlockingIOError:
            written = 0
        except OSError as e:
            self._lost(e)
            return
        if written < len(data):
            self._wait(data[written:])

    def backlog(self) -> int:
        """Bytes of records waiting for the pipe to take them."""
        return len(self.pending)

    def flush(self) -> None:
        """Write what the pipe takes now of the pending records, without blocking."""
        if not self.pending or self.failed:
            return
        try:
            written = os.write(self.fd, self.pending)
        except BlockingIOError:
            return
        except OSError as e:
            self._lost(e)
            return
        del self.pending[:written]

    def _final_flush(self) -> None:
        """Pending records get FINAL_FLUSH_S to go out; then they are dropped, with a note."""
        import select  # only when a reader fell behind

        deadline = time.monotonic() + FINAL_FLUSH_S
        poller = select.poll()
        poller.register(self.fd, select.POLLOUT)
        while self.pending and not self.failed and (left := deadline - time.monotonic()) > 0:
            poller.poll(int(left * 1000) + 1)
            self.flush()
        if self.pending and not self.failed:
            lost = len(self.pending)
            self.failed = f"runjob: {self.path} is not being read: the last {lost} bytes of records are lost"
            _note(self.failed)
        self.pending = bytearray()

    def _lost(self, e: OSError) -> None:
        # The job goes on and its exit code stays true; we say once that records are lost.
        self.failed = f"runjob: cannot write records to {self.path}: {e.strerror}; further records are lost"
        self.pending = bytearray()
        _note(self.failed)

    def close(self) -> None:
        if self.pending:
            self._final_flush()
        if self.fd > 2:
            os.close(self.fd)
            self.fd = -1


def _note(text: str) -> None:
    """One line on stderr, never blocking: stderr may be the same stalled pipe as stdout (2>&1)."""
    fd = 2
    try:
        if stat.S_ISFIFO(os.fstat(2).st_mode):
            fd = os.open("/proc/self/fd/2", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        pass
    try:
        os.write(fd, (text + "\n").encode("utf-8", "backslashreplace"))
    except OSError:
        pass  # nowhere to say it
    finally:
        if fd != 2:
            os.close(fd)


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
