"""JSON for the everyday commands without importing `json`.

`list`, `status` and `history` print `json.dumps(value, indent=2)`; importing `json` compiles
its regexes (`re` and `enum` with it: about 8 ms, a fifth of `history`'s run). Here the
same text is produced from the C helpers `json` itself uses (`_json`), byte for byte:
the same string escaping (ensure_ascii), float and int spelling, separators and indent.
The test suite checks that against `json.dumps` with hypothesis.
"""

from __future__ import annotations

from _json import encode_basestring_ascii as _string
from _json import make_scanner

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_SPECIAL = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def dumps(value: Any) -> str:
    """`json.dumps(value, indent=2)`."""
    out: list[str] = []
    _write(value, out, "\n")
    return "".join(out)


def _write(value: Any, out: list[str], newline: str) -> None:
    kind = type(value)
    if kind is str:
        out.append(_string(value))
    elif kind is dict or isinstance(value, dict):
        _dict(value, out, newline)
    elif kind is list or isinstance(value, (list, tuple)):
        _list(value, out, newline)
    elif isinstance(value, str):
        out.append(_string(value))
    else:
        out.append(_scalar(value))


def _dict(value: dict[Any, Any], out: list[str], newline: str) -> None:
    if not value:
        out.append("{}")
        return
    inner = newline + "  "
    separator = "{" + inner
    for key, item in value.items():
        # a string or a scalar inline (most values): one append, no call to _write
        kind = type(item)
        if kind is str:
            out.append(separator + _key(key) + ": " + _string(item))
        elif item is None or kind is int or kind is bool or kind is float:
            out.append(separator + _key(key) + ": " + _scalar(item))
        else:
            out.append(separator + _key(key) + ": ")
            _write(item, out, inner)
        separator = "," + inner
    out.append(newline + "}")


def _list(value: list[Any] | tuple[Any, ...], out: list[str], newline: str) -> None:
    if not value:
        out.append("[]")
        return
    inner = newline + "  "
    separator = "[" + inner
    for item in value:
        out.append(separator)
        _write(item, out, inner)
        separator = "," + inner
    out.append(newline + "]")


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        text = float.__repr__(value)
        return _SPECIAL.get(text, text)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _key(key: Any) -> str:
    """A dict key as `json` writes it: strings as they are, scalars by their JSON spelling."""
    if type(key) is str or isinstance(key, str):
        return _string(key)
    if key is None or isinstance(key, (bool, int, float)):
        return _string(_scalar(key))
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")


class _Decoding:
    """The settings the C scanner reads from a json.JSONDecoder, as json.loads has them."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}.__getitem__


_scan = make_scanner(_Decoding())  # type: ignore[arg-type]  # the scanner reads only these attributes


def loads(text: str) -> Any:
    """`json.loads(text)` for the compact JSON runjob itself wrote (anything else goes to `json`)."""
    try:
        value, end = _scan(text, 0)
    except (StopIteration, SystemError, ValueError):
        # SystemError: the bare C scanner, given a torn string, fails without an exception
        # set (it expects json.decoder loaded); json.loads then says what is wrong
        end = -1
    if end != len(text):
        import json

        return json.loads(text)
    return value
