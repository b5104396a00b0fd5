"""One TOML table checked against its declared keys (schema.py), each value converted.

Shared by validate.py (jobs, defaults, owners), pipeline_config.py and the workers'
spec: every error is collected with where it is, none raised.
"""

from __future__ import annotations

import re

from runjob.registry import schema
from runjob.registry.config import key
from runjob.registry.durations import parse_duration
from runjob.registry.schema import REQUIRED, Key

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

_JOB_NAME = re.compile(schema.JOB_NAME)
_PARAM_NAME = re.compile(schema.PARAM_NAME)
BUILTIN_PLACEHOLDERS = frozenset({"job"})


def named_tables(raw: Any, section: str, what: str, errors: list[str]) -> Iterator[tuple[str, Any, str, bool]]:
    """(name, body, key path, name is valid) of each entry of a top-level table of named tables
    (owners, jobs, pipelines, workers); a non-table and a bad name are errors."""
    if not isinstance(raw, dict):
        errors.append(f"{section}: expected a table, got {_type_name(raw)}")
        return
    for name, body in raw.items():
        where = f"{section}.{key(name)}"
        valid = _JOB_NAME.fullmatch(name) is not None
        if not valid:
            errors.append(f"{where}: bad {what} name (must match {schema.JOB_NAME})")
        yield name, body, where, valid


def _params(raw: Any, where: str, errors: list[str]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        errors.append(f"{where}: expected a table, got {_type_name(raw)}")
        return {}
    params = {}
    for name, body in raw.items():
        at = f"{where}.{key(name)}"
        if not _PARAM_NAME.fullmatch(name) or name in BUILTIN_PLACEHOLDERS:
            errors.append(f"{at}: bad param name (must match {schema.PARAM_NAME}, not 'job')")
        values = _builtin(schema.PARAM) | _table(body, schema.PARAM, at, errors)
        default = values["default"]
        if default is not None and isinstance(values["pattern"], str) and not (default == "" and values["omit_empty"]):
            if re.fullmatch(values["pattern"], default) is None:
                errors.append(f'{at}.default: "{default}" does not match the pattern {values["pattern"]}')
        params[name] = values
    return params


def _table(raw: Any, keys: dict[str, Key], where: str, errors: list[str]) -> dict[str, Any]:
    """Check the keys of one table; returns the converted values of the keys present."""
    if not isinstance(raw, dict):
        errors.append(f"{where}: expected a table, got {_type_name(raw)}")
        return {}
    _unknown_keys(raw, keys, where, errors)
    out: dict[str, Any] = {}
    for name, spec in keys.items():
        at = f"{where}.{name}" if where else name
        if name not in raw:
            if spec.default is REQUIRED:
                errors.append(f"{at}: required")
            continue
        if spec.kind == "table":
            out[name] = _table(raw[name], spec.table or {}, at, errors)
        elif spec.kind == "params":
            out[name] = _params(raw[name], at, errors)
        elif spec.kind == "instances":
            try:
                out[name] = convert(spec, raw[name])
            except ValueError as e:
                errors.append(f"{at}: {e}")
        elif spec.kind in ("owners", "jobs", "pipelines", "workers"):
            continue  # handled by _build
        else:
            try:
                out[name] = convert(spec, raw[name])
            except ValueError as e:
                errors.append(f"{at}: {e}")
    return out


def _unknown_keys(raw: dict[str, Any], keys: dict[str, Key], where: str, errors: list[str]) -> None:
    for name in raw:
        if name not in keys:
            at = f"{where}.{key(name)}" if where else key(name)
            errors.append(f"{at}: unknown key (known: {', '.join(sorted(keys))})")


def convert(key: Key, value: Any) -> Any:
    """`value` checked against `key.kind` and converted; ValueError says what is wrong."""
    kind = key.kind
    if kind == "duration":
        return parse_duration(value)
    if kind == "argv":
        return _argv(value)
    if kind in ("str", "cron"):
        return _text(_expect(value, str, "a string"))
    if kind == "regex":
        return _regex(_expect(value, str, "a string"))
    if kind == "bool":
        return _expect(value, bool, "true or false")
    if kind == "int":
        return _int(value, key.minimum, key.maximum)
    if kind == "enum":
        if value not in key.choices:
            raise ValueError(f"expected one of {', '.join(key.choices)}, got {value!r}")
        return value
    if kind in ("str_list", "regex_list"):
        items = [_expect(v, str, "a list of strings") for v in _expect(value, list, "a list")]
        items = [_text(v) for v in items] if kind == "str_list" else items
        return [_regex(v) for v in items] if kind == "regex_list" else items
    if kind == "int_list":
        return [_int(v, 0) for v in _expect(value, list, "a list of integers")]
    if kind == "str_map":
        table = _expect(value, dict, "a table of strings")
        return {k: _expect(v, str, f"a string for {k}") for k, v in table.items()}
    if kind == "stages":
        return stages(value)
    if kind == "instances":
        items = _expect(value, list, "a list of param tables")
        return [convert(Key("str_map", None, ""), item) for item in items]
    raise AssertionError(f"unknown kind {kind}")


def _argv(value: Any) -> list[str]:
    if isinstance(value, str):
        import shlex

        try:
            value = shlex.split(value)
        except ValueError as e:
            raise ValueError(f"cannot split command string: {e}") from None
    argv: list[str] = _expect(value, list, "a list of strings or a string")
    if not argv or not all(isinstance(a, str) for a in argv):
        raise ValueError("expected a non-empty list of strings")
    if not argv[0]:
        raise ValueError("the program (first element) is empty")
    return argv


def _expect(value: Any, typ: type, what: str) -> Any:
    if not isinstance(value, typ) or (typ is not bool and isinstance(value, bool)):
        raise ValueError(f"expected {what}, got {_type_name(value)} {value!r}"[:200])
    return value


def _int(value: Any, minimum: int | None, maximum: int | None = None) -> int:
    number: int = _expect(value, int, "an integer")
    if minimum is not None and number < minimum:
        raise ValueError(f"must be at least {minimum}, got {number}")
    if maximum is not None and number > maximum:
        raise ValueError(f"must be at most {maximum}, got {number}")
    return number


# Characters that end or break a line somewhere (C0, DEL, C1, U+2028/9): free text with one
# could add a line to a crontab, a systemd directive or a log line of an export.
_CONTROL = frozenset(chr(c) for c in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029))


def _text(value: str) -> str:
    bad = next((c for c in value if c in _CONTROL), None)
    if bad is not None:
        raise ValueError(f"control character U+{ord(bad):04X} not allowed here (free text stays on one line)")
    return value


def _regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as e:
        raise ValueError(f"bad regex {pattern!r}: {e}") from None
    return pattern


def _type_name(value: Any) -> str:
    return {dict: "table", list: "array", str: "string", bool: "boolean"}.get(type(value), type(value).__name__)


def _builtin(table: dict[str, Key]) -> dict[str, Any]:
    return {name: spec.default for name, spec in table.items()}


def stages(value: Any) -> list[list[str]]:
    """`stages` checked: a non-empty list of non-empty lists of job names."""
    if not isinstance(value, list) or not value:
        raise ValueError("expected a non-empty list of stages, each a list of job names")
    for i, stage in enumerate(value):
        if not isinstance(stage, list) or not stage or not all(isinstance(n, str) for n in stage):
            raise ValueError(f'stage {i + 1}: expected a non-empty list of job names, e.g. ["import-a", "import-b"]')
    return [list(stage) for stage in value]
