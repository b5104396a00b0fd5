"""The overlap lock as the runner sees it, whichever backend keeps it (a flock file, a Redis key).

Imported for type checking only (`typing` stays off the `runjob NAME` path): at run time the
backends are plain classes, `lock.FileLocker`/`FileLock` and `redis_lock.RedisLocker`/`RedisLock`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from runjob.proc.process import Watch


class Lock(Protocol):
    """A held lock."""

    @property
    def fd(self) -> int:
        """The descriptor the child inherits so the lock outlives a SIGKILLed runjob; -1 if none."""

    def set_holder(self, **info: object) -> None:
        """Who holds it (pid, run id, job, host, since), for `lock.busy` and `runjob locks`."""

    def watch(self, inner: Watch, lost: Callable[[str], None], moved: Callable[[bool], None]) -> Watch:
        """Keep the lock while the run lasts: `lost(reason)` once if it is lost (on the main
        thread, through Stop.notify), `moved(retaken)` if its file was removed under us.
        Returns the watch the supervise loop checks (`inner` included)."""

    def release(self) -> None:
        """Let go of it (and of anything taken with it)."""


class Locker(Protocol):
    """One lock key on one backend."""

    def acquire(self, wait_s: float, holder: dict[str, Any]) -> Lock | None:
        """The lock, waiting up to `wait_s`; None if another holder keeps it."""

    def holder(self) -> dict[str, Any]:
        """Who holds the key now ({} if nobody)."""
