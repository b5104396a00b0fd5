"""The registry found and loaded, through a cache of the validated registry, so `runjob NAME`
does not parse TOML every minute.

Parsing and validating jobs.toml costs about 15 ms of start-up (tomllib alone imports
typing and datetime); a cache hit is one marshal.loads. An entry holds the file's whole
content and is used only when the file still has exactly that content (and runjob the
same version): reading a few kilobytes is cheap, and unlike mtimes (which advance on
the kernel's coarse clock) a byte comparison cannot be fooled by two quick edits.

An entry decides which command runs, and holds the registry's text (secrets included),
so it is kept like state: in $XDG_CACHE_HOME/runjob (~/.cache/runjob), a directory owned
by the running user with no group or other access, entries 0600, opened without
following symlinks. A directory another user owns or can write (root's crontab with
HOME=/srv/shop, `sudo -E`) is never read or written: runjob then parses every time. The
run path, `list`, `status`, `history` and `tick` use it; --dry-run, validate, show and
export always parse the file.
"""

from __future__ import annotations

import marshal
import os

from runjob import __version__, safefs
from runjob.errors import ConfigError, RunjobError
from runjob.registry.config import Job, Pipeline, Registry

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FORMAT = 6  # 3: `shell`, `omit_empty`; 4: `enabled`, pipelines; 5: schedules checked; 6: workers


def _entry(config_path: str) -> tuple[str, str, tuple[Any, ...]]:
    """(cache dir, entry name, identity) for the registry at `config_path`."""
    real = os.path.realpath(config_path)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    name = real.replace("%", "%25").replace("/", "%2F")[-200:] + ".marshal"
    return os.path.join(base, "runjob"), name, (FORMAT, __version__, real)


def _open_dir(directory: str, create: bool) -> int:
    """A descriptor on the cache dir if runjob may trust it (else -1): ours, not a symlink,
    no access for others (a dir of ours that others may only read is tightened to 0700)."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(directory, flags)
    except FileNotFoundError:
        if not create or not _parent_trusted(os.path.dirname(directory)):
            return -1
        try:
            os.mkdir(directory, safefs.DIR_MODE)
            fd = os.open(directory, flags)
        except OSError:
            return -1
    except OSError:
        return -1
    st = os.fstat(fd)
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        os.close(fd)
        return -1
    if st.st_mode & 0o077:
        os.fchmod(fd, safefs.DIR_MODE)  # written by an older runjob: only we could write it
    return fd


def _parent_trusted(parent: str) -> bool:
    try:
        os.makedirs(parent, mode=safefs.DIR_MODE, exist_ok=True)
        st = os.stat(parent)
    except OSError:
        return False
    return st.st_uid in (os.geteuid(), 0) and not st.st_mode & 0o022


def read(config_path: str, content: bytes) -> dict[str, Any] | None:
    """The cached registry data for this file with exactly this content, or None."""
    directory, name, identity = _entry(config_path)
    dir_fd = _open_dir(directory, create=False)
    if dir_fd < 0:
        return None
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        with open(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_uid != os.geteuid() or st.st_mode & 0o022:
                return None
            key, cached_content, data = marshal.loads(f.read())
    except (OSError, ValueError, EOFError, TypeError):
        return None
    finally:
        os.close(dir_fd)
    return data if key == identity and cached_content == content else None


def write(config_path: str, content: bytes, data: dict[str, Any]) -> None:
    directory, name, identity = _entry(config_path)
    dir_fd = _open_dir(directory, create=True)
    if dir_fd < 0:
        return  # no cache: runjob parses the file every time, which is correct, only slower
    os.close(dir_fd)
    try:
        safefs.replace(os.path.join(directory, name), marshal.dumps((identity, content, data)), keep_mode=False)
    except (OSError, ValueError, RunjobError):
        pass


def find_config(explicit: str | None = None) -> str:
    """The registry path: --config, $RUNJOB_CONFIG, ./jobs.toml, XDG config, /etc."""
    if explicit:
        return explicit
    if os.environ.get("RUNJOB_CONFIG"):
        return os.environ["RUNJOB_CONFIG"]
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    candidates = ["jobs.toml", os.path.join(xdg, "runjob", "jobs.toml"), "/etc/runjob/jobs.toml"]
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    raise ConfigError([f"no registry found (looked at {', '.join(candidates)}; use --config or $RUNJOB_CONFIG)"])


def load(explicit: str | None = None, check_schedules: bool = False, cached: bool = False) -> Registry:
    """The registry; `cached` (the run path, list, status, history, tick) may use the validated
    copy cached here. An entry records whether its schedules were checked: one written by
    a run serves `list` only once a parse with the schedule check has confirmed it."""
    path = find_config(explicit)
    try:
        with open(path, "rb") as f:
            content = f.read()
    except OSError as e:
        raise ConfigError([f"cannot read: {e.strerror}"], path) from None
    hit = read(path, content) if cached else None
    if hit is not None and (hit["schedules_checked"] or not check_schedules):
        jobs = {name: Job(name, values) for name, values in hit["jobs"].items()}
        pipelines = {name: Pipeline(name, values) for name, values in hit["pipelines"].items()}
        registry = Registry(path, hit["defaults"], hit["owners"], jobs, pipelines)
        registry.workers = hit.get("workers", {})  # their secrets stay out of the jobs' children
        return registry
    from runjob.registry.validate import parse_bytes

    registry = parse_bytes(content, path, check_schedules)
    if cached:  # never --dry-run, validate, show or export: they parse every time
        write(
            path,
            content,
            {
                "defaults": registry.defaults,
                "owners": registry.owners,
                "jobs": {name: job.values for name, job in registry.jobs.items()},
                "pipelines": {name: p.values for name, p in registry.pipelines.items()},
                "workers": registry.workers,
                "schedules_checked": check_schedules,
            },
        )
    return registry
