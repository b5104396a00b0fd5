"""A cache of the validated registry, so `runjob NAME` does not parse TOML every minute.

Parsing and validating jobs.toml costs about 15 ms of start-up (tomllib alone imports
typing and datetime); a cache hit is one marshal.loads. The cache is keyed on the
file's identity (path, inode, size, mtime_ns, ctime_ns) and runjob's version, so any
edit, rename-into-place or upgrade misses it. It lives under $XDG_CACHE_HOME/runjob
(~/.cache/runjob); when that cannot be written, runjob just parses every time.
Only the run path reads it: validate, list, tick and export always parse the file.
"""

from __future__ import annotations

import marshal
import os

from runjob import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FORMAT = 1


def _paths(config_path: str) -> tuple[str, tuple[Any, ...]] | None:
    try:
        real = os.path.realpath(config_path)
        st = os.stat(real)
    except OSError:
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    name = real.replace("%", "%25").replace("/", "%2F") + ".marshal"
    identity = (FORMAT, __version__, real, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    return os.path.join(base, "runjob", name[-200:]), identity


def read(config_path: str) -> dict[str, Any] | None:
    """The cached registry data for this exact file, or None."""
    found = _paths(config_path)
    if found is None:
        return None
    path, identity = found
    try:
        with open(path, "rb") as f:
            key, data = marshal.loads(f.read())
    except (OSError, ValueError, EOFError, TypeError):
        return None
    return data if key == identity else None


def write(config_path: str, data: dict[str, Any]) -> None:
    found = _paths(config_path)
    if found is None:
        return
    path, identity = found
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(marshal.dumps((identity, data)))
        os.replace(tmp, path)
    except (OSError, ValueError):
        pass  # no cache: runjob parses the file every time, which is correct, only slower
