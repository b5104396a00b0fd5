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


_dumps, encode_basestring = _c_encoder()


def timestamp(t: float | None = None) -> str:
    """RFC 3339, UTC, milliseconds: 2026-11-23T15:40:00.123Z."""
    t = time.time() if t is None else t
    ms = int(t * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{ms:03d}Z"


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

    def __init__(
        self, sink: Sink, job: str, run_id: str, correlation_id: str | None = None, secrets: list[str] | None = None
    ) -> None:
        self.sink = sink
        self.redactor: Any = None
        if secrets:  # every record of the run is masked, whatever field a value reached
            from runjob.records.redact import Redactor

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


def plain_output_parts(
    pieces: tuple[str, str, str], lines: list[bytes], ts: str, seq: int, longest: int | None = None
) -> list[bytes]:
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


def writev_records(
    fd: int,
    parts: list[bytes],
    sizes: list[int],
    messages_are_lines: bool,
    seq: int,
    rest: Callable[[int, bytes], None] | None = None,
) -> None:
    """Write plain_output_parts(...) with writev, in batches of whole records. A record is
    fixed text, its message, its line and its seq, so a batch's length comes from the line
    lengths (summing every part's length would cost more than the writev). What a short
    write (a signal on a pipe, a full non-blocking pipe) leaves goes to `rest` (default:
    write_all), in order."""
    fixed = sum(map(len, parts[:PARTS])) - sizes[0] - len(parts[1]) - _digits(seq, seq + 1) if parts else 0
    for first in range(0, len(sizes), RECORDS_PER_WRITEV):
        last = min(len(sizes), first + RECORDS_PER_WRITEV)
        batch = parts[PARTS * first : PARTS * last]
        try:
            written = os.writev(fd, batch)
        except BlockingIOError:
            written = 0
        lines = sum(sizes[first:last])
        messages = lines if messages_are_lines else sum(map(len, batch[1::PARTS]))
        if written < fixed * (last - first) + lines + messages + _digits(seq + first, seq + last):
            (rest or write_all)(fd, b"".join(batch)[written:] + b"".join(parts[PARTS * last :]))
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


def record_max() -> int:
    """The record size limit: RUNJOB_RECORD_MAX bytes if set (at least 1024), else 16 KiB."""
    text = os.environ.get("RUNJOB_RECORD_MAX", "")
    if text.isdigit() and int(text) >= 1024:
        return int(text)
    return RECORD_MAX


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

    def __init__(
        self, path: str = "", nonblocking: bool = False, keep: tuple[str, int] | None = None, hold: str = ""
    ) -> None:
        """`keep`: (state_dir/runs, keep_runs): every record also goes to the run's kept file.
        `hold`: "on-success" holds records back from `path`/stdout until run.end, then gives them
        all (from the kept file) unless the run succeeded; "always": never (the terminal view runs)."""
        self.keep, self.keep_fd, self.kept_path = keep, -1, ""
        self.hold, self.ended, self.ended_ok, self.noisy = hold if keep else "", False, False, False
        self.path = path or "<stdout>"
        self.fd = 1
        self.nonblocking = False
        self.pending = bytearray()
        self.grown = False  # the pipe's buffer enlarged (_grow_pipe)
        self.failed: str | None = None
        self.seq = 0
        self.limit = record_max()
        self.pieces: dict[tuple[str, int], tuple[str, str, str]] = {}
        self.log: Any = None
        if not path:
            self.fd, self.nonblocking = _stdout_fd() if nonblocking else (1, False)
        else:
            from runjob.records.logfile import LogFile

            self.log = LogFile(path)
            self.fd = self.log.fd

    def record(self, fields: dict[str, Any]) -> None:
        if self.keep is not None and self.keep_fd < 0:
            self._open_kept(fields)
        if self.hold and not self.ended:  # what decides whether held records are given at the end
            self.noisy = self.noisy or fields.get("level") != "info"
            if fields.get("event") == "run.end":
                self.ended, self.ended_ok = True, fields.get("status") == "success"
        if "seq" in fields:
            fields["seq"] = self.seq
        self.seq += 1
        try:
            data = (encode(fields) + "\n").encode()
        except (ValueError, UnicodeError, RecursionError):  # NaN, infinity, a lone surrogate
            from runjob.records.record_size import sanitize

            fields = sanitize(fields)
            data = (encode(fields) + "\n").encode()
        if len(data) > self.limit:
            from runjob.records.record_size import shrink

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
            from runjob.records.record_size import output_one_by_one

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
        if self.keep_fd >= 0:
            self._to_kept(writev_records, self.keep_fd, parts, sizes, longest <= MESSAGE_PREFIX, seq)
        if self.hold:
            return
        if self.pending:  # behind earlier records: keep the order
            self.pending += b"".join(parts)
            return
        if self.log is not None:
            self.log.writing()
        try:
            writev_records(self.fd, parts, sizes, longest <= MESSAGE_PREFIX, seq, self._rest)
        except OSError as e:
            self._lost(e)
        finally:
            if self.log is not None:
                self.log.done()

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
        if self.keep_fd >= 0:
            self._to_kept(write_all, self.keep_fd, data)
        if not self.hold:
            self._out(data)

    def _open_kept(self, fields: dict[str, Any]) -> None:
        """The run's kept file, state_dir/runs/JOB/RUN_ID.jsonl, on its first record."""
        from runjob import safefs  # loaded already by lock.py on the run path

        assert self.keep is not None
        directory = safefs.ensure_state_dir(os.path.dirname(self.keep[0]), "runs", str(fields["job"]))
        self.kept_path = os.path.join(directory, f"{fields['run_id']}.jsonl")
        self.keep_fd = safefs.open_private(self.kept_path, os.O_RDWR | os.O_CREAT | os.O_APPEND)

    def _to_kept(self, write: Callable[..., None], *args: Any) -> None:
        try:
            write(*args)
        except OSError as e:  # a full disk: the run goes on; held records are then given as they come
            os.close(self.keep_fd)
            self.keep_fd, self.hold = -1, ""
            _note(f"runjob: cannot write the kept run {self.kept_path}: {e.strerror}; no longer kept")

    def _out(self, data: bytes) -> None:
        if self.failed:
            return
        if self.pending:  # behind earlier records: keep the order
            self.pending += data
            return
        try:
            if not self.nonblocking:
                self._write_whole(data)
                return
            written = os.write(self.fd, data)
        except BlockingIOError:
            written = 0
        except OSError as e:
            self._lost(e)
            return
        if written < len(data):
            self._wait(data[written:])

    def _write_whole(self, data: bytes) -> None:
        if self.log is None:
            write_all(self.fd, data)
            return
        self.log.writing()
        try:
            write_all(self.fd, data)
        finally:
            self.log.done()

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
        # A torn record in a log file is ended by the next run (LogFile starts a new line).
        self.failed = f"runjob: cannot write records to {self.path}: {e.strerror}; further records are lost"
        self.pending = bytearray()
        _note(self.failed)

    def close(self) -> None:
        if self.keep_fd >= 0:
            # A run is judged by its run.end (a warning in a run that succeeded stays quiet);
            # one that never ran (a busy lock) by its records' levels (a skip is info).
            if self.hold == "on-success" and (not self.ended_ok if self.ended else self.noisy):
                self._replay()
            os.close(self.keep_fd)
            self.keep_fd = -1
            _prune(os.path.dirname(self.kept_path), self.keep[1] if self.keep else 0)
        if self.pending:
            self._final_flush()
        if self.log is not None:
            self.log.close()
        elif self.fd > 2:  # a stdout pipe opened a second time (_stdout_fd)
            os.close(self.fd)
        self.fd = -1

    def _replay(self) -> None:
        """Every held record, read back from the kept file's own fd (never held in memory; a
        concurrent prune may have unlinked its name), in pieces that each get FINAL_FLUSH_S
        against a stalled reader."""
        self.hold = ""
        offset = 0
        while (chunk := os.pread(self.keep_fd, PENDING_MAX, offset)) and not self.failed:
            offset += len(chunk)
            self._out(chunk)
            if self.pending:
                self._final_flush()


def _prune(directory: str, keep: int) -> None:
    """Only the newest `keep` kept runs of a job stay (by modification time: a running one is new)."""
    try:
        kept = [e for e in os.scandir(directory) if e.name.endswith(".jsonl")]
        if len(kept) <= keep:  # the usual case at the end of a run: no stat of every kept file
            return
        entries = [(e.stat().st_mtime_ns, e.name) for e in kept]
    except OSError:
        return
    for _, name in sorted(entries)[: max(0, len(entries) - keep)]:
        try:
            os.unlink(os.path.join(directory, name))
        except OSError:
            pass  # a concurrent run pruned it first


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
