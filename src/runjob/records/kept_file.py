"""The run's kept file (SPEC section 11): state_dir/runs/JOB/RUN_ID.jsonl holds every record
of the run, and only the newest `keep_runs` of a job stay.

Records are kept as written, one JSON object a line, except run.output records of text
lines, which are kept as the lines themselves after a header line: RS (0x1e, which a JSON
record never holds: it would be escaped), then `BYTES SEQ TIMESTAMP STREAM ATTEMPT`, then
BYTES bytes of lines, each newline-terminated: plain lines (output.is_plain: printable
ASCII, no quote or backslash) as they are; other lines as their JSON strings (quotes
included), after GS (0x1d) instead of RS. Such records differ only in their seq,
timestamp, line and message (a prefix of the line), so `Expander` rebuilds them byte for
byte from the header and the run's common fields (in its first record, always a whole
one). A child that prints a lot then costs a sixth of the bytes on disk and of the
copying: records are about six times the size of a short line, and a run's copy was
written once more beside stdout.
`runjob logs` and a quiet run's replay read kept files through `Expander`.
"""

from __future__ import annotations

import os

from runjob.records.output_records import (
    output_pieces,
    plain_output_parts,
    quoted_messages,
    quoted_output_parts,
    write_all,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

PIECE = 1 << 16  # a replay reads the file in pieces this big, never whole into memory
MARK = b"\x1e"  # starts the header of kept plain lines
QUOTED = b"\x1d"  # starts the header of kept quoted lines (GS: escaped in a JSON string too)


class KeptFile:
    def __init__(self, runs_dir: str, keep: int) -> None:
        self.runs_dir, self.keep = runs_dir, keep
        self.fd, self.path = -1, ""
        self.error = ""  # why it is no longer written, once a write failed

    def open(self, job: str, run_id: str) -> None:
        """Created on the run's first record, private, never through a symlink."""
        from runjob import safefs  # loaded already by lock.py on the run path

        directory = safefs.ensure_state_dir(os.path.dirname(self.runs_dir), "runs", job)
        self.path = os.path.join(directory, f"{run_id}.jsonl")
        self.fd = safefs.open_private(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND)

    def write(self, data: bytes) -> bool:
        """False (and the file closed, no longer written) if the write failed."""
        try:
            write_all(self.fd, data)
        except OSError as e:  # a full disk: the run goes on
            os.close(self.fd)
            self.fd = -1
            self.error = f"runjob: cannot write the kept run {self.path}: {e.strerror}; no longer kept"
            return False
        return True

    def write_plain(self, block: bytes, seq: int, ts: str, stream: str, attempt: int, quoted: bool = False) -> bool:
        """run.output records of plain lines, kept as the lines (`block`: them joined with
        newlines; see the module's docstring), or of `quoted` lines (each a JSON string).
        One writev: the block is not copied again."""
        mark = QUOTED if quoted else MARK
        head = b"%s%d %d %s %s %d\n" % (mark, len(block) + 1, seq, ts.encode(), stream.encode(), attempt)
        try:
            done = os.writev(self.fd, (head, block, b"\n"))
        except OSError:
            done = 0  # tried again below, where a failure is handled
        if done == len(head) + len(block) + 1:
            return True
        return self.write((head + block + b"\n")[done:])

    def pieces(self) -> Any:
        """The file's bytes from its start, a piece at a time, read through our own fd (a
        concurrent prune may have unlinked its name)."""
        offset = 0
        while chunk := os.pread(self.fd, PIECE, offset):
            offset += len(chunk)
            yield chunk

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            prune(os.path.dirname(self.path), self.keep)


def prune(directory: str, keep: int) -> None:
    """The newest `keep` kept runs of a job stay (by modification time: a running one is new).
    Pruned in batches: only once `slack` more have piled up are the files stat'ed and the
    oldest removed, so a run at the end of a full directory does one scandir, not `keep` stats."""
    try:
        kept = [e for e in os.scandir(directory) if e.name.endswith(".jsonl")]
        if len(kept) <= keep + slack(keep):  # the usual case at the end of a run
            return
        entries = [(e.stat().st_mtime_ns, e.name) for e in kept]
    except OSError:
        return
    for _, name in sorted(entries)[: max(0, len(entries) - keep)]:
        try:
            os.unlink(os.path.join(directory, name))
        except OSError:
            pass  # a concurrent run pruned it first


def slack(keep: int) -> int:
    """How many more than `keep` kept runs wait for the next batch of pruning."""
    return max(1, keep // 10)


def _next_mark(data: bytes, start: int) -> int:
    """Where the next line that starts a header of kept lines begins, less one (-1: none)."""
    found = [at for at in (data.find(b"\n" + MARK, start), data.find(b"\n" + QUOTED, start)) if at >= 0]
    return min(found, default=-1)


class Expander:
    """A kept file's bytes in, in pieces of any size; its records as they were written out."""

    def __init__(self) -> None:
        self.rest = b""
        self.common: dict[str, Any] | None = None
        self.made: dict[tuple[str, int], tuple[str, str, str]] = {}

    def feed(self, chunk: bytes) -> bytes:
        """The whole records `chunk` completes (a torn end waits for the next piece)."""
        data, start = self.rest + chunk, 0
        out: list[bytes] = []
        while start < len(data):
            if data[start : start + 1] in (MARK, QUOTED):
                end = self._plain(data, start, out)
            else:
                end = _next_mark(data, start) + 1 or data.rfind(b"\n", start) + 1
                if end > start:
                    self._learn(data[start:end])
                    out.append(data[start:end])
            if end <= start:
                break
            start = end
        self.rest = data[start:]
        return b"".join(out)

    def _plain(self, data: bytes, start: int, out: list[bytes]) -> int:
        """Where the kept plain lines at `start` end, their records appended to `out` (or
        `start` if they are not all there yet)."""
        eol = data.find(b"\n", start)
        if eol < 0:
            return start
        try:
            size, seq, ts, stream, attempt = data[start + 1 : eol].split(b" ")
            end, key = eol + 1 + int(size), (stream.decode(), int(attempt))
        except ValueError:  # not a header we wrote (the file was changed): shown as it is
            out.append(data[start : eol + 1])
            return eol + 1
        if end > len(data):
            return start
        if key not in self.made:
            self.made[key] = output_pieces(self.common or {}, *key)
        lines = data[eol + 1 : end - 1].split(b"\n")
        if data[start : start + 1] == QUOTED:
            parts = quoted_output_parts(self.made[key], lines, quoted_messages(lines), ts.decode(), int(seq))
        else:
            parts = plain_output_parts(self.made[key], lines, ts.decode(), int(seq))
        out.append(b"".join(parts))
        return end

    def _learn(self, records: bytes) -> None:
        """The run's common fields, from its first record."""
        if self.common is None:
            import json  # only to read a kept file back

            try:
                first = json.loads(records.partition(b"\n")[0])
            except ValueError:
                first = None
            first = first if isinstance(first, dict) else {}
            self.common = {k: first.get(k) for k in ("job", "run_id", "correlation_id", "host", "pid")}
