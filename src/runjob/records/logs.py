"""JSON log records (SPEC section 4): one object per line, common fields first.

This module builds a run's records (`Records`); `encoding` encodes them (the `_json` C
encoder, byte for byte python-json-logger's form), `output_records` builds run.output
records in bulk (the hot path: millions of lines), `sink` writes them to stdout or a log
file and `kept_file` keeps every run's copy. The names other modules use are re-exported
here.
"""

from __future__ import annotations

import os

from runjob.records.encoding import COMMON as COMMON
from runjob.records.encoding import MESSAGE_PREFIX as MESSAGE_PREFIX
from runjob.records.encoding import RECORD_MAX as RECORD_MAX
from runjob.records.encoding import encode as encode
from runjob.records.encoding import encode_basestring as encode_basestring
from runjob.records.encoding import record_max as record_max
from runjob.records.encoding import timestamp as timestamp
from runjob.records.output_records import encode_output as encode_output
from runjob.records.output_records import output_pieces as output_pieces
from runjob.records.output_records import plain_output_parts as plain_output_parts
from runjob.records.output_records import write_all as write_all
from runjob.records.sink import PENDING_MAX as PENDING_MAX
from runjob.records.sink import JsonSink as JsonSink

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Protocol

    class Sink(Protocol):
        def record(self, fields: dict[str, Any]) -> None: ...
        def output(self, common: dict[str, Any], stream: str, lines: list[str], attempt: int) -> None: ...
        def output_plain(self, common: dict[str, Any], stream: str, lines: list[bytes], attempt: int) -> None: ...
        def close(self) -> None: ...


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
