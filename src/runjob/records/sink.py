"""JsonSink: records to stdout or a log file (and the run's kept file), in order, whole,
never blocking the supervise loop on a slow reader of stdout."""

from __future__ import annotations

import os
import stat  # already loaded by os: costs nothing
import time

from runjob.records.encoding import MESSAGE_PREFIX, encode, encode_basestring, record_max, timestamp
from runjob.records.output_records import (
    UTF8,
    encode_output,
    output_pieces,
    plain_output_parts,
    quoted_messages,
    quoted_output_parts,
    write_all,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from runjob.records.kept_file import KeptFile

# Records waiting for a slow stdout reader (a pipe's worth); above it the child's pipes are not read.
PENDING_MAX = 1 << 16
PIPE_SIZE = 1 << 20
BATCH_BYTES = 1 << 15  # run.output records are joined and written about this many bytes at a time
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


def grow_pipe(fd: int) -> None:
    """Up to 1 MiB of pipe buffer (the unprivileged limit): a reader that takes big reads
    then wakes us far less often than with the default 64 KiB (fewer polls, bigger reads
    and writes). Quick runs never grow it."""
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
        self.kept: KeptFile | None = None
        if keep is not None:
            from runjob.records.kept_file import KeptFile

            self.kept = KeptFile(*keep)
        self.hold, self.ended, self.ended_ok, self.noisy = hold if keep else "", False, False, False
        self.path = path or "<stdout>"
        self.fd = 1
        self.nonblocking = False
        self.pending = bytearray()
        self.grown = False  # the pipe's buffer enlarged (grow_pipe)
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
        if self.kept is not None and self.kept.fd < 0 and not self.kept.error:
            self.kept.open(str(fields["job"]), str(fields["run_id"]))
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
        if self.failed and not self._keeping():  # nowhere left to write them: do not build them
            return
        pieces = self._pieces(common, stream, attempt)
        # The lines as JSON strings, encoded at once (a JSON string holds no raw newline): the
        # records are then built of bytes like plain lines', and the kept file keeps these.
        block = "\n".join(map(encode_basestring, lines)).encode(*UTF8)
        quoted = block.split(b"\n")
        if len(quoted) != len(lines):  # a lone surrogate spelled a newline byte: the long way
            self.seq += len(lines)
            self.write(encode_output(pieces, lines, timestamp(), self.seq - len(lines)))
            return
        if max(map(len, quoted)) > self._line_room(pieces):
            self._one_by_one(common, stream, lines, attempt)
            return
        seq, ts = self.seq, timestamp()
        self.seq += len(lines)
        if (
            self.kept is not None
            and self.kept.fd >= 0
            and not self.kept.write_plain(block, seq, ts, stream, attempt, True)
        ):
            self._kept_lost()
        if not self.hold:
            parts = quoted_output_parts(pieces, quoted, quoted_messages(quoted, lines), ts, seq)
            self._out_all(parts, max(map(len, quoted)))

    def _one_by_one(self, common: dict[str, Any], stream: str, lines: list[str], attempt: int) -> None:
        """run.output records for lines some of which are too long once escaped: each such line
        is cut to fit, in its own record marked truncated; the others go out as usual."""
        from runjob.records.record_size import fit_line

        for line in lines:
            fields: dict[str, Any] = {
                "timestamp": timestamp(),
                "level": "info",
                "event": "run.output",
                "message": line[:MESSAGE_PREFIX],
            } | common
            fields |= {"seq": None, "stream": stream, "line": line, "attempt": attempt}
            excess = len((encode(fields) + "\n").encode()) - self.limit
            if excess > 0:  # 32: room for `"truncated": true`
                fields["line"] = fit_line(line, len(encode_basestring(line).encode()) - excess - 32, encode_basestring)
                fields["truncated"] = True
            self.record(fields)

    def output_plain(self, common: dict[str, Any], stream: str, lines: list[bytes], attempt: int) -> None:
        """run.output records for plain lines (output.is_plain)."""
        self.output_block(common, stream, lines, attempt, b"\n".join(lines))

    def output_block(self, common: dict[str, Any], stream: str, lines: list[bytes], attempt: int, block: bytes) -> None:
        """output_plain with the lines joined at hand (`block`, as read from the child): the
        kept file keeps the block itself (kept_file.py), stdout gets the records."""
        if self.failed and not self._keeping():
            return
        pieces = self._pieces(common, stream, attempt)
        longest = max(map(len, lines))
        if longest > self._line_room(pieces):
            self.output(common, stream, [line.decode() for line in lines], attempt)
            return
        seq, ts = self.seq, timestamp()
        self.seq += len(lines)
        if self.kept is not None and self.kept.fd >= 0 and not self.kept.write_plain(block, seq, ts, stream, attempt):
            self._kept_lost()
        if not self.hold:
            self._out_all(plain_output_parts(pieces, lines, ts, seq, longest), longest)

    def _wait(self, data: bytes) -> None:
        """`data` waits for the pipe to take it."""
        if not self.grown:
            self.grown = True
            grow_pipe(self.fd)
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
        if self.kept is not None and self.kept.fd >= 0:
            self._to_kept(data)
        if not self.hold:
            self._out(data)

    def _keeping(self) -> bool:
        """Is the run's kept file still written? It gets every record even after stdout failed."""
        return self.kept is not None and self.kept.fd >= 0

    def _to_kept(self, data: bytes) -> None:
        assert self.kept is not None
        if not self.kept.write(data):
            self._kept_lost()

    def _kept_lost(self) -> None:
        assert self.kept is not None
        self.hold = ""  # held records are then given as they come
        note(self.kept.error)

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

    def _out_all(self, parts: list[bytes], longest: int) -> None:
        """Records (six parts each, their longest line `longest` bytes) out in batches of
        whole records (_batch_step), with the checks of a blocking fd made once a chunk read."""
        step, join = _batch_step(parts, longest), b"".join
        if self.nonblocking or self.failed or self.pending:
            for at in range(0, len(parts), step):
                self._out(join(parts[at : at + step]))
            return
        if self.log is not None:
            self.log.writing()
        write, fd = os.write, self.fd
        try:
            for at in range(0, len(parts), step):
                data = join(parts[at : at + step])
                done = write(fd, data)
                if done < len(data):  # a short write (a signal, a full disk): the rest, or the error
                    write_all(fd, data[done:])
        except OSError as e:
            self._lost(e)
        finally:
            if self.log is not None:
                self.log.done()

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
            note(self.failed)
        self.pending = bytearray()

    def _lost(self, e: OSError) -> None:
        # The job goes on and its exit code stays true; we say once that records are lost.
        # A torn record in a log file is ended by the next run (LogFile starts a new line).
        self.failed = f"runjob: cannot write records to {self.path}: {e.strerror}; further records are lost"
        self.pending = bytearray()
        note(self.failed)

    def close(self) -> None:
        if self.kept is not None and self.kept.fd >= 0:
            # A run is judged by its run.end (a warning in a run that succeeded stays quiet);
            # one that never ran (a busy lock) by its records' levels (a skip is info).
            if self.hold == "on-success" and (not self.ended_ok if self.ended else self.noisy):
                self._replay()
            self.kept.close()
        if self.pending:
            self._final_flush()
        if self.log is not None:
            self.log.close()
        elif self.fd > 2:  # a stdout pipe opened a second time (_stdout_fd)
            os.close(self.fd)
        self.fd = -1

    def _replay(self) -> None:
        """Every held record, read back from the kept file (never held in memory), in pieces
        that each get FINAL_FLUSH_S against a stalled reader."""
        from runjob.records.kept_file import Expander

        assert self.kept is not None
        self.hold = ""
        expander = Expander()
        for chunk in self.kept.pieces():
            if self.failed:
                break
            self._out(expander.feed(chunk))
            if self.pending:
                self._final_flush()


def _batch_step(parts: list[bytes], longest: int) -> int:
    """How many parts a batch of some 32 KiB of records holds. A chunk's records (six times
    its bytes) joined at once, or 64 KiB of them, free a block that takes the heap's top past
    glibc's trim threshold (128 KiB), so the heap would shrink and grow again every chunk,
    the kernel zeroing fresh pages each time (8x the page faults)."""
    return 6 * max(1, BATCH_BYTES // (sum(map(len, parts[:6])) - 2 * len(parts[4]) + 2 * longest))


def note(text: str) -> None:
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
