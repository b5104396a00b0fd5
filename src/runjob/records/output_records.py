"""run.output records in bulk: the hot path (millions of lines).

A stream's records differ only in their timestamp, message, seq and line, so they are
built from the constant text of one stream and attempt (`output_pieces`) and json's C
string escaper, one list operation per chunk read, with the same bytes as
encoding.encode gives for the same fields (tests/test_records.py checks it).
"""

from __future__ import annotations

import os

from runjob.records.encoding import COMMON, MESSAGE_PREFIX, dumps, encode_basestring

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


SEQ_PLACEHOLDER = '"seq": %d'  # no common value can spell it: their quotes are escaped
UTF8 = ("utf-8", "surrogateescape")  # as JsonSink.write encodes records


def output_pieces(common: dict[str, Any], stream: str, attempt: int) -> tuple[str, str, str]:
    """The constant text of one stream's run.output records: before the message, between
    the message and the line (with a `%d` for seq), after the line."""
    mid = "".join(f", {dumps(k)}: {dumps(common[k])}" for k in COMMON[4:]).replace("%", "%%")
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
    quotes or backslashes; see output.is_plain), as the pieces to join: the same bytes,
    with no decode, escape or encode. Six parts a record: head, message, text up to seq's
    last three digits, those and the text up to the line, line, tail."""
    messages = _messages(lines, max(map(len, lines), default=0) if longest is None else longest)
    return _parts(pieces, '"', messages, lines, ts, seq)


def quoted_output_parts(
    pieces: tuple[str, str, str], quoted: list[bytes], messages: list[bytes], ts: str, seq: int
) -> list[bytes]:
    """plain_output_parts for lines already JSON strings (quotes included, UTF-8), each with
    its message likewise: the same bytes as encode_output, with only the lines encoded."""
    return _parts(pieces, "", messages, quoted, ts, seq)


def quoted_messages(quoted: list[bytes], texts: list[str] | None = None) -> list[bytes]:
    """The message of each quoted line: itself when its text is at most MESSAGE_PREFIX
    characters, else its text's prefix quoted. `texts` are the lines' texts if at hand (a
    kept file has only the quoted lines: they are decoded, rarely, when long)."""
    if texts is not None:
        if max(map(len, texts), default=0) <= MESSAGE_PREFIX:  # the common case: no per-line work
            return quoted
        return [q if len(t) <= MESSAGE_PREFIX else _quoted_prefix(t) for q, t in zip(quoted, texts, strict=True)]
    # At most MESSAGE_PREFIX bytes, so characters, between the quotes: the message is the line.
    return [q if len(q) <= MESSAGE_PREFIX + 2 else _quoted_prefix(_decoded(q), q) for q in quoted]


def _quoted_prefix(text: str, quoted: bytes = b"") -> bytes:
    if quoted and len(text) <= MESSAGE_PREFIX:
        return quoted
    return encode_basestring(text[:MESSAGE_PREFIX]).encode(*UTF8)


def _decoded(quoted: bytes) -> str:
    import json  # only to read a kept file back

    try:
        text = json.loads(quoted)
    except ValueError:
        return ""
    return text if isinstance(text, str) else ""


def _parts(
    pieces: tuple[str, str, str], quote: str, messages: list[Any], lines: list[Any], ts: str, seq: int
) -> list[bytes]:
    head = ('{"timestamp": "' + ts + '"' + pieces[0] + quote).encode()
    before, after = _around_seq(quote + pieces[1] + quote)
    parts = [head, b"", b"", b"", b"", (quote + pieces[2] + "\n").encode()] * len(lines)
    parts[1::6] = messages
    parts[2::6], parts[3::6] = _seq_parts(before, after, seq, len(lines))
    parts[4::6] = lines
    return parts


def _around_seq(template: str) -> tuple[bytes, bytes]:
    """The text before and after seq's `%d` in a %-template. Only that `%d` is bare: the
    common values' own `%` are doubled, and a value may well hold "%d" (a correlation id
    of `50%done`), so split at the one placeholder, then undouble each side."""
    at = template.index(SEQ_PLACEHOLDER) + len(SEQ_PLACEHOLDER) - 2
    return template[:at].replace("%%", "%").encode(), template[at + 2 :].replace("%%", "%").encode()


def write_all(fd: int, data: bytes) -> None:
    """os.write until everything is written (pipes take partial writes)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
