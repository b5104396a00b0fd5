"""The child's output, a chunk at a time, in bounded memory whatever it prints.

`LineSplitter` cuts bytes into lines: a line ending `\\r\\n` loses its `\\r`, a bare `\\r`
ends a segment (a progress bar's redraw) and only the last segment of a line is kept, and
a line longer than the record size allows is cut (the rest dropped, the line marked
truncated). `StreamHandler` turns lines into run.output records (or passes bytes
through), masks secrets before anything is cut or kept, keeps the stderr tail from the
lines as kept, and notes whether a transient stderr pattern matched a line.
"""

from __future__ import annotations

from runjob.records.encoding import MESSAGE_PREFIX, record_max
from runjob.records.logs import Records
from runjob.records.output_records import write_all
from runjob.records.redact import Redactor

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from runjob.records.logs import Sink

TAIL_BYTES = 4096
READ_SIZE = 64 * 1024
LINE_RESERVE = 1024  # room in a record for everything but the line
# Bytes a JSON string holds as they are: printable ASCII but the quote and the backslash
# (and the newline, which separates the lines of a block).
_PLAIN = bytes(b for b in range(0x20, 0x80) if b not in b'"\\') + b"\n"

Piece = tuple[list[bytes], bool, bytes]  # lines, cut, the lines joined (b"" if not at hand)


def is_plain(block: bytes) -> bool:
    """True if every line of `block` is its own JSON string body and none is a JSON object:
    the common case, encoded without decoding. (translate() deleting the plain bytes is a
    C table lookup per byte, ten times faster here than a regex character class.)"""
    if block.translate(None, _PLAIN):
        return False
    # A brace is rare in plain output: one memchr for it first (searching for "\n{" stops
    # at every newline, several times slower).
    return b"{" not in block or not (block.startswith(b"{") or b"\n{" in block)


def has_longer(block: bytes, limit: int) -> bool:
    """Does a line of `block` run over `limit` bytes? A search back for a newline from the
    end of each window of `limit` bytes: a few memrchr calls a chunk instead of a len() a line."""
    start = 0
    while len(block) - start > limit:
        newline = block.rfind(b"\n", start, start + limit + 1)
        if newline < 0:
            return True
        start = newline + 1
    return False


def _segment(line: bytes) -> bytes:
    """What a terminal would show of a line: trailing CRs dropped, then the last redraw."""
    return line.rstrip(b"\r").rpartition(b"\r")[2]


class LineSplitter:
    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self.partial = b""
        self.skipping = False  # inside the dropped rest of a truncated line

    def feed(self, chunk: bytes) -> list[Piece]:
        """In order: ([complete lines], False, block) and ([one cut line], True, b"")."""
        data = self.partial + chunk if self.partial else chunk
        if self.skipping:
            first = data.find(b"\n")
            if first < 0:
                self.partial = b""
                return []
            data, self.skipping = data[first + 1 :], False
        cut = data.rfind(b"\n")
        out: list[Piece] = []
        if cut >= 0:
            block, self.partial = data[:cut], data[cut + 1 :]
            lines = block.split(b"\n")
            if b"\r" in block:
                lines, block = list(map(_segment, lines)), b""
                long = max(map(len, lines)) > self.max_line
            else:
                long = len(block) > self.max_line and has_longer(block, self.max_line)
            out = self._cut_long(lines) if long else [(lines, False, block)]
        else:
            self.partial = data
        if b"\r" in self.partial:  # a redraw in progress: only its last state can matter
            self.partial = self.partial[self.partial.rstrip(b"\r").rfind(b"\r") + 1 :]
        if len(self.partial) > self.max_line:
            out.append(([self.partial[: self.max_line]], True, b""))
            self.partial, self.skipping = b"", True
        return out

    def _cut_long(self, lines: list[bytes]) -> list[Piece]:
        """Split lines holding over-long ones into short-line runs and cut lines, in order."""
        out: list[Piece] = []
        short: list[bytes] = []
        for line in lines:
            if len(line) <= self.max_line:
                short.append(line)
                continue
            if short:
                out.append((short, False, b""))
                short = []
            out.append(([line[: self.max_line]], True, b""))
        if short:
            out.append((short, False, b""))
        return out

    def finish(self) -> bytes:
        rest, self.partial = self.partial, b""
        return _segment(rest) if b"\r" in rest else rest


class StreamHandler:
    """One of the child's streams (stdout or stderr) in one attempt."""

    def __init__(
        self,
        stream: str,
        mode: str,
        sink: Sink,
        records: Records,
        attempt: int,
        secrets: list[str],
        patterns: list[Any] | None = None,
    ) -> None:
        self.stream = stream
        self.mode = mode  # json: records; passthrough: bytes to our fd; discard: nothing
        self.sink = sink
        self.records = records
        self.attempt = attempt
        self.redactor = Redactor(secrets)
        self.patterns = patterns or []  # compiled with re.MULTILINE, matched per line
        self.matched = False
        self.tail = bytearray() if stream == "stderr" else None
        self.line_max = record_max() - LINE_RESERVE
        # Cut with room for a whole secret past the limit: masked first, then cut again.
        slack = 6 * max(map(len, self.redactor.values), default=0)
        self.splitter = LineSplitter(self.line_max + slack)
        self.fd_out = 1 if stream == "stdout" else 2
        self.split = mode == "json" or bool(self.patterns) or self.tail is not None
        # The JSON sink also takes the lines' bytes as read (the run's kept copy writes them as they are).
        self.output_block = getattr(sink, "output_block", None)

    def feed(self, chunk: bytes) -> None:
        if self.mode == "passthrough" and self.fd_out >= 0:
            try:
                write_all(self.fd_out, chunk)
            except OSError:  # our own stdout/stderr is gone (EPIPE): the job goes on, its output is dropped
                self.fd_out = -1
        if self.split:
            for lines, truncated, block in self.splitter.feed(chunk):
                self._lines(lines, truncated, block)

    def finish(self) -> None:
        if self.split:
            rest = self.splitter.finish()
            if rest:  # a last line without its newline
                self._lines([rest], len(rest) > self.line_max)

    def tail_text(self) -> str:
        """The last 4 KiB of stderr as its records show it (segments, secrets masked)."""
        return bytes((self.tail or b"")[-TAIL_BYTES:]).decode("utf-8", "replace").lstrip("\ufffd")

    def _keep_tail(self, block: bytes) -> None:
        if self.tail is not None:
            self.tail += block + b"\n"
            if len(self.tail) > 2 * TAIL_BYTES:
                del self.tail[:-TAIL_BYTES]

    def _lines(self, lines: list[bytes], truncated: bool, block: bytes = b"") -> None:
        if not truncated and not self.patterns and self.mode == "json":
            block = block or b"\n".join(lines)
            # The fast path: nothing to escape, match or mask (a job's secrets are searched
            # for in the block as a whole).
            if is_plain(block) and not (self.redactor and self.redactor.in_plain(block)):
                self._keep_tail(block)
                if self.output_block is not None:
                    self.output_block(self.records.common, self.stream, lines, self.attempt, block)
                else:
                    self.sink.output_plain(self.records.common, self.stream, lines, self.attempt)
                return
        texts = [line.decode("utf-8", "replace") for line in lines]
        if self.redactor.may_change("\n".join(texts)):
            texts = [self.redactor.text(t) for t in texts]
        if truncated:
            texts = [texts[0][: self.line_max]]
        self._match(texts)
        if self.tail is not None:
            self._keep_tail("\n".join(texts).encode())
        if self.mode != "json":
            return
        block = block or b"\n".join(lines)
        if truncated:
            self.records.emit(
                "run.output",
                texts[0][:MESSAGE_PREFIX],
                stream=self.stream,
                line=texts[0],
                attempt=self.attempt,
                truncated=True,
            )
        else:
            # A line that may be a JSON object starts with a brace: one search in the block.
            self._emit(texts, block.startswith(b"{") or b"\n{" in block)

    def _match(self, texts: list[str]) -> None:
        if self.patterns and not self.matched:
            self.matched = any(p.search(t) for t in texts for p in self.patterns)

    def _emit(self, texts: list[str], braces: bool) -> None:
        if not braces:
            self.sink.output(self.records.common, self.stream, texts, self.attempt)
            return
        from runjob.records import child_json

        batch: list[str] = []
        for text in texts:
            data = child_json.parse(text) if len(text) <= self.line_max else None
            if data is None:
                batch.append(text)
                continue
            if batch:
                self.sink.output(self.records.common, self.stream, batch, self.attempt)
                batch = []
            if self.redactor:
                data = self.redactor.value(data)
            self.records.emit(
                "run.output",
                child_json.message_of(data),
                child_json.level_of(data),
                stream=self.stream,
                data=data,
                attempt=self.attempt,
            )
        if batch:
            self.sink.output(self.records.common, self.stream, batch, self.attempt)
