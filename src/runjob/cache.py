"""A cache of the validated registry, so `runjob NAME` does not parse TOML every minute.

Parsing and validating jobs.toml costs about 15 ms of start-up (tomllib alone imports
typing and datetime); a cache hit is one marshal.loads. An entry holds the file's whole
content and is used only when the file still has exactly that content (and runjob the
same version): reading a few kilobytes is cheap, and unlike mtimes (which advance on
the kernel's coarse clock) a byte comparison cannot be fooled by two quick edits.
Entries live under $XDG_CACHE_HOME/runjob (~/.cache/runjob); when that cannot be
written, runjob parses every time. Only the run path reads it: validate, list, tick
and export always parse the file.
"""

from __future__ import annotations

import marshal
import os

from runjob import __version__, atomic

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FORMAT = 2


def _entry(config_path: str) -> tuple[str, tuple[Any, ...]]:
    real = os.path.realpath(config_path)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    name = real.replace("%", "%25").replace("/", "%2F")[-200:] + ".marshal"
    return os.path.join(base, "runjob", name), (FORMAT, __version__, real)


def read(config_path: str, content: bytes) -> dict[str, Any] | None:
    """The cached registry data for this file with exactly this content, or None."""
    path, identity = _entry(config_path)
    try:
        with open(path, "rb") as f:
            key, cached_content, data = marshal.loads(f.read())
    except (OSError, ValueError, EOFError, TypeError):
        return None
    return data if key == identity and cached_content == content else None


def write(config_path: str, content: bytes, data: dict[str, Any]) -> None:
    path, identity = _entry(config_path)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic.replace(path, marshal.dumps((identity, content, data)))
    except (OSError, ValueError):
        pass  # no cache: runjob parses the file every time, which is correct, only slower
