"""Overlap locks: one flock(2)-locked file per lock key under `state_dir/locks/`.

Why flock and not the filelock package: the locked descriptor is handed to the child
(pass_fds), so the kernel keeps the lock while the child lives even if runjob itself is
SIGKILLed, exactly like `flock(1)`. And the kernel drops it when the last holder dies, so
a lock file left behind by a crashed run never blocks. Lock files are never deleted:
unlinking a flock'd file races with a second runner opening the old inode.

The file's content says who holds it (JSON: pid, child_pid, run_id, job, host, since),
for `lock.busy` records and `runjob locks`. It is advisory text; the flock is the truth.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time

from runjob.errors import InternalError
from runjob.logs import encode

POLL_S = 0.05


class FileLock:
    """A held lock; `fd` is what the child inherits."""

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self.fd = fd
        self.holder: dict[str, object] = {}

    def set_holder(self, **info: object) -> None:
        self.holder.update(info)
        data = encode(self.holder).encode() + b"\n"
        try:
            os.pwrite(self.fd, data, 0)
            os.ftruncate(self.fd, len(data))
        except OSError:
            pass  # holder text is informational; the flock is what protects

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing our descriptor drops our share of the flock
            self.fd = -1


def _open(path: str) -> int:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise InternalError(f"cannot open lock file {path}: {e.strerror}") from None


def try_acquire(path: str) -> FileLock | None:
    """The lock if it is free now, else None."""
    fd = _open(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EACCES):
            return None
        raise InternalError(f"cannot lock {path}: {e.strerror}") from None
    return FileLock(path, fd)


def acquire(path: str, wait_s: float) -> FileLock | None:
    """The lock, waiting up to `wait_s` seconds for it; None if it stayed busy."""
    deadline = time.monotonic() + wait_s
    while True:
        lock = try_acquire(path)
        if lock is not None or time.monotonic() >= deadline:
            return lock
        time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))


class exclusive:  # noqa: N801  (used like a function: `with exclusive(path):`)
    """A blocking exclusive flock on `path` (created if missing) for a short critical
    section: tick's minute, the metrics file, history set-up. Not for job locks, which
    must not block. Opening raises OSError."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def __enter__(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)  # closing drops the flock


def read_holder(path: str) -> dict[str, object]:
    import json  # only when the lock is busy or listed

    try:
        with open(path, "rb") as f:
            holder = json.loads(f.read(4096) or b"{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def is_held(path: str) -> bool:
    """True if some process holds the lock now (we probe with a shared, non-blocking flock)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def held_locks(locks_dir: str) -> list[dict[str, object]]:
    """Every lock under `locks_dir` held right now, with what its file says of the holder."""
    try:
        names = sorted(n for n in os.listdir(locks_dir) if n.endswith(".lock"))
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        path = os.path.join(locks_dir, name)
        if is_held(path):
            out.append({"lock_key": name[: -len(".lock")], "lock_file": path} | read_holder(path))
    return out
