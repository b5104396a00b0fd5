"""`[workers.NAME]` (SPEC section 10): how they are checked (their keys are declared in schema.py).

Workers are not jobs: `[defaults]` job keys do not apply, and every limit left unset is off.
validate.py calls `parse_workers` only when the registry has a `[workers]` table, so
nothing here is loaded on the `runjob NAME` path.
"""

from __future__ import annotations

import re

from runjob.registry.schema import RESTART, WORKER

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAX_BYTES = 1 << 50  # 1 PiB: any larger memory_max is a typo
_UNITS = {
    "": 1,
    "B": 1,
    "K": 1000,
    "KB": 1000,
    "KIB": 1024,
    "M": 1000**2,
    "MB": 1000**2,
    "MIB": 1024**2,
    "G": 1000**3,
    "GB": 1000**3,
    "GIB": 1024**3,
    "T": 1000**4,
    "TB": 1000**4,
    "TIB": 1024**4,
}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([A-Za-z]*)")


def parse_size(value: object) -> int:
    """Bytes from 512MiB, 1.5G, 1000000 ...; ValueError says what is wrong."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f'expected a size like "512MiB", got {value!r}')
    m = _SIZE.fullmatch(str(value).strip())
    unit = m.group(2).upper() if m else "?"
    if m is None or unit not in _UNITS:
        raise ValueError(f"bad size {value!r} (a number with B, K, KB, KiB, M, MB, MiB, G, GB, GiB, T, TB or TiB)")
    size = int(float(m.group(1)) * _UNITS[unit])
    if not 0 < size <= MAX_BYTES:
        raise ValueError(f"size {value!r} out of range (more than 0, at most 1PiB)")
    return size


def parse_workers(raw: Any, owners: dict[str, Any], job_names: set[str], errors: list[str]) -> dict[str, Any]:
    """Worker name -> its values (durations in seconds, memory_max in bytes); problems go to `errors`."""
    from runjob.registry.tables import _table, named_tables

    workers = {}
    for name, body, where, valid in named_tables(raw, "workers", "worker", errors):
        if valid and name in job_names:
            errors.append(f'{where}: "{name}" also names a job; exports would give both one unit name')
        values = _table(body, WORKER, where, errors)
        if "command" in values:
            workers[name] = _complete(where, values, owners, errors)
    return workers


def _complete(where: str, values: dict[str, Any], owners: dict[str, Any], errors: list[str]) -> dict[str, Any]:
    out = {k: values.get(k, spec.default) for k, spec in WORKER.items() if spec.kind != "table"}
    out["restart"] = {k: spec.default for k, spec in RESTART.items()} | values.get("restart", {})
    out["owners"] = values.get("owners", {})
    if out["memory_max"] is not None:
        try:
            out["memory_max"] = parse_size(out["memory_max"])
        except ValueError as e:
            errors.append(f"{where}.memory_max: {e}")
    for role, owner in out["owners"].items():
        if owner and owner not in owners:
            errors.append(f'{where}.owners.{role}: owner "{owner}" is not declared in [owners]')
    if "max_delay" in values.get("restart", {}) and out["restart"]["max_delay"] < out["restart"]["delay"]:
        errors.append(f"{where}.restart.max_delay: shorter than restart.delay")
    return out
