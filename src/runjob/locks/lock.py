"""Overlap locks: one flock(2)-locked file per lock key under `state_dir/locks/`.

Why flock and not the filelock package: the locked descriptor is handed to the child
(pass_fds), so the kernel keeps the lock while the child lives even if runjob itself is
SIGKILLed, exactly like `flock(1)`. And the kernel drops it when the last holder dies, so
a lock file left behind by a crashed run never blocks. runjob never deletes lock files:
unlinking a flock'd file races with a second runner opening the old inode.

Who holds it: the file's content (JSON: pid, pid_start, run_id, job, host, since). A
byte-range (POSIX) lock on the same file is a gate around it: a runner tries the flock and,
if it wins, writes its identity while holding the gate exclusively; readers read under the
gate's shared lock and look at the flock first. So a reader never sees a held lock with an
empty text or the previous holder's. (flock and POSIX locks are independent on Linux, and a
child does not inherit the gate.) If the runjob the text names is gone (pid plus start
time) but the flock is still held, a leftover holds it: the child of a SIGKILLed runjob or
a daemon the job left with the descriptor; the real holders are then found in /proc.

Deleted or renamed lock files (a tmp cleaner): after the flock, the path must still name
the locked inode, else runjob tries again. A holder re-checks its path every CHECK_S from
its supervise loop (Guard) and re-creates and re-takes the file; a run that starts in that
gap is stopped by the journal's `running` row for the key (store/recorder.py).
"""

from __future__ import annotations

import errno
import fcntl
import os
import time

from runjob import safefs
from runjob.errors import InternalError, RunjobError
from runjob.proc import procid
from runjob.records.encoding import encode

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from runjob.proc.process import Watch

POLL_S = 0.05
GATE_WAIT_S = 5.0  # the gate is held for one write; only a stopped process holds it longer
STATE_LOCK_WAIT_S = 5.0  # tick.lock, metrics lock, history set-up: short critical sections
CHECK_S = 0.5  # how often a holder checks that its lock file is still there
_BUSY = (errno.EWOULDBLOCK, errno.EACCES)


class Busy(Exception):
    """The lock key is in use by `holder` although the flock was free (see History.start)."""

    def __init__(self, holder: dict[str, Any]) -> None:
        super().__init__("busy")
        self.holder = holder


class FileLock:
    """A held lock; `fd` is what the child inherits."""

    def __init__(self, path: str, fd: int, ident: tuple[int, int]) -> None:
        self.path = path
        self.fd = fd
        self.ident = ident  # (st_dev, st_ino) of the locked file
        self.holder: dict[str, object] = {}
        self.old_fds: list[int] = []  # files a cleaner removed; the child may still hold them

    def set_holder(self, **info: object) -> None:
        self.holder.update(info)
        data = encode(self.holder).encode() + b"\n"
        try:
            os.pwrite(self.fd, data, 0)
            os.ftruncate(self.fd, len(data))
        except OSError:
            pass  # holder text is informational; the flock is what protects

    def check(self) -> bool | None:
        """None if the path still names our file; else re-create and re-take it: True if
        that worked, False if another process holds the new file."""
        if _ident(self.path) == self.ident:
            return None
        safefs.forget(os.path.dirname(self.path))  # the cleaner may have taken locks/ too
        try:
            new = try_acquire(self.path, self.holder)
        except RunjobError:
            return False
        if new is None:
            return False
        self.old_fds.append(self.fd)
        self.fd, self.ident = new.fd, new.ident
        return True

    def watch(self, inner: Watch, lost: Callable[[str], None], moved: Callable[[bool], None]) -> Watch:
        """A flock cannot be taken away; only its file can be removed (a tmp cleaner): re-checked by a Guard."""
        return Guard(inner, self, moved)  # type: ignore[return-value]  # a Watch by shape

    def release(self) -> None:
        for fd in (self.fd, *self.old_fds):
            if fd >= 0:
                os.close(fd)  # closing our descriptor drops our share of the flock
        self.fd, self.old_fds = -1, []


class Guard:
    """A process.Watch that also re-checks a held lock's file every CHECK_S; `notice` is told
    True (re-created) or False (could not be re-taken; told once)."""

    def __init__(self, inner: Watch, lock: FileLock, notice: Callable[[bool], None]) -> None:
        self.inner = inner
        self.lock = lock
        self.notice = notice
        self.next = time.monotonic() + CHECK_S
        self.told_lost = False

    @property
    def due(self) -> float:
        return self.next if self.inner.due is None else min(self.next, self.inner.due)

    def check(self, now: float) -> None:
        self.inner.check(now)
        if now < self.next:
            return
        self.next = now + CHECK_S
        result = self.lock.check()
        if result or (result is False and not self.told_lost):
            self.told_lost = result is False
            self.notice(bool(result))


class _Gate:
    """The byte-range lock that orders holder writes and reads (see the module text)."""

    def __init__(self, fd: int, path: str, exclusive: bool) -> None:
        self.fd, self.path = fd, path
        self.op = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH

    def __enter__(self) -> None:
        deadline = time.monotonic() + GATE_WAIT_S
        while True:
            try:
                fcntl.lockf(self.fd, self.op | fcntl.LOCK_NB)
                return
            except OSError as e:
                if e.errno not in (*_BUSY, errno.EAGAIN):
                    raise InternalError(f"cannot lock {self.path}: {e.strerror}") from None
            if time.monotonic() >= deadline:
                raise InternalError(f"{self.path}: its holder record stayed locked for {GATE_WAIT_S:g}s")
            time.sleep(0.01)

    def __exit__(self, *exc: object) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_UN)


def _ident(path: str) -> tuple[int, int] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _open(path: str) -> int:
    locks_dir = os.path.dirname(path)
    try:
        safefs.ensure_state_dir(os.path.dirname(locks_dir), os.path.basename(locks_dir))
        return safefs.open_private(path, os.O_RDWR | os.O_CREAT)
    except InternalError as e:
        raise InternalError(f"cannot open lock file {path}: {e}") from None


def try_acquire(path: str, holder: dict[str, Any] | None = None) -> FileLock | None:
    """The lock if it is free now (its holder text written), else None."""
    for _ in range(10):
        fd = _open(path)
        try:
            with _Gate(fd, path, exclusive=True):
                got = _take(fd, path, holder or {})
        except BaseException:
            os.close(fd)
            raise
        if isinstance(got, FileLock):
            return got
        os.close(fd)
        if got:
            return None
    raise InternalError(f"cannot lock {path}: the file keeps being replaced")


def _take(fd: int, path: str, holder: dict[str, Any]) -> FileLock | bool:
    """Under the gate: the lock; True if busy; False if the path no longer names this file."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in _BUSY:
            return True
        raise InternalError(f"cannot lock {path}: {e.strerror}") from None
    st = os.fstat(fd)
    if _ident(path) != (st.st_dev, st.st_ino):
        return False  # deleted or replaced between our open and our flock
    lock = FileLock(path, fd, (st.st_dev, st.st_ino))
    lock.set_holder(**holder)  # before the gate opens: no reader sees an old or empty text
    return lock


class FileLocker:
    """One lock key's flock file (the protocol.Locker of the file backend)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def acquire(self, wait_s: float, holder: dict[str, Any]) -> FileLock | None:
        return acquire(self.path, wait_s, holder)

    def holder(self) -> dict[str, Any]:
        return read_holder(self.path)


def acquire(path: str, wait_s: float, holder: dict[str, Any] | None = None) -> FileLock | None:
    """The lock, waiting up to `wait_s` seconds for it; None if it stayed busy."""
    deadline = time.monotonic() + wait_s
    while True:
        lock = try_acquire(path, holder)
        if lock is not None or time.monotonic() >= deadline:
            return lock
        time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))


class exclusive:  # noqa: N801  (used like a function: `with exclusive(path):`)
    """An exclusive flock on `path` (created 0600 if missing) for a short critical section:
    tick's minute, the metrics file, history set-up, a write to the history journal. Waits at
    most `wait_s`, then InternalError naming who holds it (a local user must not freeze tick
    or runs). `with exclusive(path) as fd`: the locked file, to read or write under the lock."""

    def __init__(self, path: str, wait_s: float = STATE_LOCK_WAIT_S) -> None:
        self.path, self.wait_s = path, wait_s
        self.fd = safefs.open_private(path, os.O_RDWR | os.O_CREAT)

    def __enter__(self) -> int:
        deadline = time.monotonic() + self.wait_s
        pause = 0.001  # most holders (a journal write) keep it for microseconds: look again soon
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self.fd
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    break
            time.sleep(pause)
            pause = min(pause * 2, POLL_S)
        st = os.fstat(self.fd)
        pids = procid.holders_of((st.st_dev, st.st_ino))
        os.close(self.fd)
        raise InternalError(
            f"{self.path} stayed locked for {self.wait_s:g}s (open in pid(s) "
            f"{', '.join(map(str, pids)) or 'unknown'}); giving up"
        )

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)  # closing drops the flock


def read_holder(path: str) -> dict[str, Any]:
    """Who holds the lock at `path` now ({} if nobody): its holder text, or, if the runjob
    that text names is gone, the processes really holding it (`leftover`: true)."""
    try:
        fd = safefs.open_private(path, os.O_RDONLY)
    except RunjobError:
        return {}
    try:
        with _Gate(fd, path, exclusive=False):
            if not _held(fd):
                return {}
            text = os.pread(fd, 4096, 0)
        st = os.fstat(fd)
    except RunjobError:
        return {}
    finally:
        os.close(fd)
    return _real_holder(_parse(text), (st.st_dev, st.st_ino))


def _held(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


def _parse(text: bytes) -> dict[str, Any]:
    import json  # only when the lock is busy or listed

    try:
        holder = json.loads(text or b"{}")
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _real_holder(holder: dict[str, Any], ident: tuple[int, int]) -> dict[str, Any]:
    pid = holder.get("pid")
    if isinstance(pid, int) and procid.alive(pid, holder.get("pid_start")):
        return holder
    pids = procid.holders_of(ident)
    shown = {k: v for k, v in holder.items() if k not in ("pid", "pid_start")}
    return shown | {"pid": pids[0] if pids else None, "pids": pids, "leftover": True}


def is_held(path: str) -> bool:
    """True if some process holds the lock now."""
    return bool(read_holder(path))


def held_locks(locks_dir: str) -> list[dict[str, object]]:
    """Every lock under `locks_dir` held right now, with who holds it."""
    try:
        names = sorted(n for n in os.listdir(locks_dir) if n.endswith(".lock"))
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        path = os.path.join(locks_dir, name)
        holder = read_holder(path)
        if holder:
            out.append({"lock_key": name[: -len(".lock")], "lock_file": path} | holder)
    return out
