"""Masking secret values (SPEC section 12), the one place every record, message and
command output goes through.

A secret is masked as `***` wherever it surfaces: spelled as it is, spelled with JSON
escapes (`\\u0074ok...`, any mix of escaped and plain characters), as a key or a value of
a child's JSON object once decoded, and, for a multi-line secret, each of its lines on
its own (a child printing it line by line gives one record per line, in separate reads).
Values are masked, never dropped, so a record keeps its shape.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MASK = "***"
MIN_LEN = 3  # shorter values would mask common text and reveal the secret by where they hit
MAX_DEPTH = 64  # deeper values (a child's JSON) are refused by the caller, never walked


def needles(values: list[str]) -> list[str]:
    """What to mask for these secret values: each value and each line of a multi-line one,
    long ones first, so a secret containing another is fully hidden."""
    found: set[str] = set()
    for value in values:
        if len(value) >= MIN_LEN:
            found.add(value)
        if "\n" in value:
            found.update(line.rstrip("\r") for line in value.split("\n") if len(line.rstrip("\r")) >= MIN_LEN)
    return sorted(found, key=len, reverse=True)


def job_secrets(env: dict[str, str], names: list[str]) -> list[str]:
    """The secret values of a job as its registry and our environment give them."""
    import os

    return needles([env.get(n, os.environ.get(n, "")) for n in names])


def registry_secrets(raw: Any) -> list[str]:
    """Every secret value a raw (unvalidated) registry names, for masking its error messages:
    the values its `env` tables give the names in any `secrets` list, and ours."""
    import os

    if not isinstance(raw, dict):
        return []
    tables = (
        [t for t in [raw.get("defaults"), *(raw.get("jobs") or {}).values()] if isinstance(t, dict)]
        if isinstance(raw.get("jobs") or {}, dict)
        else []
    )
    names = {n for t in tables if isinstance(t.get("secrets"), list) for n in t["secrets"] if isinstance(n, str)}
    envs = [t["env"] for t in tables if isinstance(t.get("env"), dict)]
    values = [str(env[n]) for env in envs for n in names if n in env]
    return needles(values + [os.environ[n] for n in names if n in os.environ])


class Redactor:
    """Masks a fixed set of secret values; falsy when there is nothing to mask."""

    def __init__(self, values: list[str]) -> None:
        self.values = needles(values)
        self._escaped: Any = None  # compiled on first need: `re` stays off the hot path
        # Only an ASCII value can be spelled in ASCII text, and only as itself without a backslash.
        self._ascii = [v.encode() for v in self.values if v.isascii()]

    def __bool__(self) -> bool:
        return bool(self.values)

    def in_plain(self, block: bytes) -> bool:
        """Would masking change a line of `block`, which is printable ASCII without a
        backslash (output.is_plain)? One search per value in the whole block instead of a
        text() per line: a value within a line is within the block."""
        return any(v in block for v in self._ascii)

    def may_change(self, text: str) -> bool:
        """Could text() change a line of `text` (lines joined with newlines)? False is sure."""
        return bool(self.values) and ("\\" in text or any(v in text for v in self.values))

    def text(self, text: str) -> str:
        """`text` with every secret masked, plain or JSON-escaped."""
        if "\\" in text and self.values:  # an escape is spelled with a backslash
            text = self._pattern().sub(MASK, text)  # first: it also matches the plain spelling
        for value in self.values:
            if value in text:
                text = text.replace(value, MASK)
        return text

    def value(self, obj: Any, depth: int = 0) -> Any:
        """A decoded JSON value (or any record field) with every string and key masked."""
        if isinstance(obj, str):
            return self.text(obj) if self.values else obj
        if depth > MAX_DEPTH:
            return MASK
        if isinstance(obj, dict):
            return {self.value(k, depth + 1): self.value(v, depth + 1) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [self.value(v, depth + 1) for v in obj]
        return obj

    def _pattern(self) -> Any:
        if self._escaped is None:
            import re

            self._escaped = re.compile("|".join(_spelled(v) for v in self.values))
        return self._escaped


_SHORT = {
    '"': '\\\\"',
    "\\": "\\\\\\\\",
    "/": "\\\\/",
    "\b": "\\\\b",
    "\f": "\\\\f",
    "\n": "\\\\n",
    "\r": "\\\\r",
    "\t": "\\\\t",
}


def _spelled(value: str) -> str:
    """A regex for `value` with each character either as it is or as a JSON escape."""
    import re

    parts = []
    for ch in value:
        forms = [re.escape(ch), _u_escape(ord(ch))]
        if ch in _SHORT:
            forms.append(_SHORT[ch])
        parts.append("(?:" + "|".join(forms) + ")")
    return "".join(parts)


def _u_escape(code: int) -> str:
    """A regex for `\\uXXXX` (any hex case) of one code point; a surrogate pair above the BMP."""
    if code > 0xFFFF:
        code -= 0x10000
        return _u_escape(0xD800 + (code >> 10)) + _u_escape(0xDC00 + (code & 0x3FF))
    return "\\\\u" + "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in f"{code:04x}")


def shown_url(url: str) -> str:
    """`url` as it may be logged: scheme://host[:port], nothing else (no user, password, path or query):
    webhook, ping and Redis URLs often carry a token or a password."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(a malformed URL)"
    host = f"[{host}]" if ":" in host else host
    if parts.scheme == "unix":  # a Redis socket: its path names it, and is no secret
        return f"unix://{parts.path}"
    return f"{parts.scheme}://{host}{port}" if parts.scheme else "(a URL without a scheme)"
