"""The child's output, a chunk at a time, in bounded memory whatever it prints.

`LineSplitter` cuts bytes into lines of at most 64 KiB (the rest of a longer line is
dropped and the line marked truncated). `StreamHandler` turns lines into run.output
records (or passes bytes through), keeps the stderr tail and notes whether a transient
stderr pattern was seen.
"""

from __future__ import annotations

from runjob.logs import MAX_LINE, Records, write_all

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from runjob.logs import Sink

TAIL_BYTES = 4096
READ_SIZE = MAX_LINE  # see LineSplitter.feed: a read never holds a whole over-long line
# Bytes a JSON string holds as they are: printable ASCII but the quote and the backslash
# (and the newline, which separates the lines of a block).
_PLAIN = bytes(b for b in range(0x20, 0x80) if b not in b'"\\') + b"\n"


def is_plain(block: bytes) -> bool:
    """True if every line of `block` is its own JSON string body and none is a JSON object:
    the common case, encoded without decoding. (translate() deleting the plain bytes is a
    C table lookup per byte, ten times faster here than a regex character class.)"""
    return not block.translate(None, _PLAIN) and not (block.startswith(b"{") or b"\n{" in block)


class LineSplitter:
    def __init__(self) -> None:
        self.partial = b""
        self.skipping = False  # inside the dropped rest of a truncated line

    def feed(self, chunk: bytes) -> list[tuple[bytes, bool]]:
        """In order: (complete lines joined by b"\\n", False) blocks and (cut line, True)."""
        data = self.partial + chunk if self.partial else chunk
        if self.skipping:
            first = data.find(b"\n")
            if first < 0:
                self.partial = b""
                return []
            data, self.skipping = data[first + 1 :], False
        cut = data.rfind(b"\n")
        out: list[tuple[bytes, bool]] = []
        if cut >= 0:
            block, self.partial = data[:cut], data[cut + 1 :]
            # Reads are at most READ_SIZE (= MAX_LINE) bytes, so only the first line of a
            # block (the partial line carried over plus this chunk) can be over-long.
            first = block.find(b"\n")
            out = self._cut_long(block) if (first if first >= 0 else len(block)) > MAX_LINE else [(block, False)]
        else:
            self.partial = data
        if len(self.partial) > MAX_LINE:
            out.append((self.partial[:MAX_LINE], True))
            self.partial, self.skipping = b"", True
        return out

    @staticmethod
    def _cut_long(block: bytes) -> list[tuple[bytes, bool]]:
        """Split a block holding over-long lines into short-line blocks and cut lines, in order."""
        out: list[tuple[bytes, bool]] = []
        short: list[bytes] = []
        for line in block.split(b"\n"):
            if len(line) <= MAX_LINE:
                short.append(line)
                continue
            if short:
                out.append((b"\n".join(short), False))
                short = []
            out.append((line[:MAX_LINE], True))
        if short:
            out.append((b"\n".join(short), False))
        return out

    def finish(self) -> bytes:
        rest, self.partial = self.partial, b""
        return rest


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
        self.secrets = secrets
        self.patterns = patterns or []
        self.matched = False
        self.tail = bytearray() if stream == "stderr" else None
        self.splitter = LineSplitter()
        self.fd_out = 1 if stream == "stdout" else 2

    def feed(self, chunk: bytes) -> None:
        if self.tail is not None:
            self.tail += chunk
            if len(self.tail) > 2 * TAIL_BYTES:
                del self.tail[:-TAIL_BYTES]
        if self.mode == "passthrough" and self.fd_out >= 0:
            try:
                write_all(self.fd_out, chunk)
            except OSError:  # our own stdout/stderr is gone (EPIPE): the job goes on, its output is dropped
                self.fd_out = -1
        if self.mode == "json" or self.patterns:
            for piece, truncated in self.splitter.feed(chunk):
                self._lines(piece, truncated)

    def finish(self) -> None:
        if self.mode == "json" or self.patterns:
            rest = self.splitter.finish()
            if rest:  # a last line without its newline
                self._lines(rest, False)

    def tail_text(self) -> str:
        text = bytes((self.tail or b"")[-TAIL_BYTES:]).decode("utf-8", "replace")
        return self._scrub(text)

    def _scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def _lines(self, piece: bytes, truncated: bool) -> None:
        if not truncated and self.mode == "json" and not self.secrets and not self.patterns and is_plain(piece):
            self.sink.output_plain(self.records.common, self.stream, piece.split(b"\n"), self.attempt)
            return
        text = self._scrub(piece.decode("utf-8", "replace"))
        self._match(text)
        if self.mode != "json":
            return
        if truncated:
            self.records.emit("run.output", text, stream=self.stream, line=text, attempt=self.attempt, truncated=True)
        else:
            self._emit(text.replace("\r\n", "\n"))

    def _match(self, text: str) -> None:
        if self.patterns and not self.matched:
            self.matched = any(p.search(text) for p in self.patterns)

    def _emit(self, text: str) -> None:
        lines = text.split("\n")
        if not (text.startswith("{") or "\n{" in text):  # C-speed test for the common case
            self.sink.output(self.records.common, self.stream, lines, self.attempt)
            return
        batch: list[str] = []
        for line in lines:
            data = _json_object(line)
            if data is None:
                batch.append(line)
                continue
            if batch:
                self.sink.output(self.records.common, self.stream, batch, self.attempt)
                batch = []
            message = data.get("message", data.get("msg", ""))
            self.records.emit(
                "run.output",
                message if isinstance(message, str) else "",
                level=child_level(data),
                stream=self.stream,
                data=data,
                attempt=self.attempt,
            )
        if batch:
            self.sink.output(self.records.common, self.stream, batch, self.attempt)


def _json_object(line: str) -> dict[str, object] | None:
    """The line as a dict if it is one JSON object, else None."""
    if not line.startswith("{"):
        return None
    import json

    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None




# A child's own level names (Python logging, Monolog, syslog, Go/zap...) as runjob's levels.
_LEVELS = {"trace": "debug", "debug": "debug", "info": "info", "notice": "info", "warn": "warning",
           "warning": "warning", "error": "error", "err": "error", "critical": "error", "crit": "error",
           "alert": "error", "emergency": "error", "emerg": "error", "fatal": "error", "panic": "error"}  # fmt: skip


def child_level(data: dict[str, object]) -> str:
    """The record's level for a child's JSON line: its own `level` (or Monolog's `level_name`,
    or `severity`) when that is a known level name, else info. It stays in `data` too."""
    for key in ("level", "level_name", "severity"):
        value = data.get(key)
        if isinstance(value, str):
            return _LEVELS.get(value.lower(), "info")
    return "info"
