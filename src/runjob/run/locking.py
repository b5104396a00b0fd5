"""A run's overlap lock: which backend, taking it (cut short by a stop signal), and the records
when it is busy, unavailable, lost or its file removed.

The backends sit behind one protocol (locks/protocol.py): `lock.FileLocker` for the file
backend, `redis_lock.RedisLocker` for a job with a lock_backend (Redis's key, then this
host's file lock). Nothing here looks at which one it got.
"""

from __future__ import annotations

from runjob.errors import EXIT_BUSY, EXIT_OK
from runjob.locks import lock as locks
from runjob.proc import process
from runjob.records.redact import shown_url

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
    from typing import Any

    from runjob.locks.protocol import Lock, Locker
    from runjob.run.model import Run
else:
    from runjob.proc.process import signal  # _signal, without the enums: see process.py


class NotRun(Exception):
    """The lock could not be taken and the policy says the run ends now, with `exit_code`."""

    def __init__(self, exit_code: int) -> None:
        super().__init__(exit_code)
        self.exit_code = exit_code


def locker(run: Run) -> Locker:
    """The backend of the run's lock key."""
    plan = run.plan
    job = plan.job
    local = locks.FileLocker(plan.lock_file)
    if not job.lock_backend:
        return local
    from runjob.locks import redis_lock  # loaded only for a job with a lock_backend

    return redis_lock.RedisLocker(
        job.lock_backend, job.lock_password_env, plan.lock_key, plan.lock_ttl, plan.kill_grace, local
    )


def take(run: Run, holder: dict[str, Any], stop: process.Stop) -> Lock | None:
    """The held lock, None if busy; NotRun if Redis is unavailable and the policy stops the run.
    Cut short by a stop signal (the handler raises Interrupted meanwhile): a lock taken as the
    signal came is released, and the run ends without running."""
    held: Lock | None = None
    stop.interruptible = True  # first: a signal before it is seen by the test below, one after raises
    try:
        if not stop.signum:
            held = _take(run, holder)
    except process.Interrupted:
        pass
    finally:
        stop.interruptible = False
    if stop.signum and held is not None:
        held.release()
    return held


def _take(run: Run, holder: dict[str, Any]) -> Lock | None:
    job = run.plan.job
    wait = job.wait if job.on_busy == "wait" else 0.0
    backend = locker(run)
    if not job.lock_backend:
        return backend.acquire(wait, holder)
    from runjob.locks import redis_lock

    try:
        return backend.acquire(wait, holder)
    except redis_lock.Unavailable as e:
        return _unavailable(run, wait, holder, e)


def _unavailable(run: Run, wait: float, holder: dict[str, Any], e: Exception) -> Lock | None:
    """Redis is down: this host's file lock only (`local`), or stop (NotRun)."""
    job = run.plan.job
    policy = job.lock_unavailable
    then = {"fail": "not run (exit 75)", "skip": "skipped", "local": "running under this host's file lock only"}
    run.records.emit(
        "lock.unavailable",
        f"{run.plan.name}: {e}; {then[policy]}",
        level="error" if policy == "fail" else "warning",
        lock_key=run.plan.lock_key,
        backend=shown_url(job.lock_backend),
        lock_unavailable=policy,
        error=str(e),
    )
    if policy == "local":
        return locks.FileLocker(run.plan.lock_file).acquire(wait, holder)
    raise NotRun(EXIT_BUSY if policy == "fail" else EXIT_OK)


def keep(run: Run, held: Lock, stop: process.Stop, inner: process.Watch) -> process.Watch:
    """Watch the held lock while the run lasts (Redis renewal, a removed lock file)."""
    return held.watch(
        inner,
        lambda reason: stop.notify(lambda: _lost(run, stop, reason)),
        lambda retaken: _file_gone(run, retaken),
    )


def _lost(run: Run, stop: process.Stop, reason: str) -> None:
    """On the main thread: say the lock is lost, and stop the child if on_lock_lost says so."""
    job = run.plan.job
    kill = job.on_lock_lost == "kill"
    run.records.emit(
        "lock.lost",
        f"{run.plan.name}: lock {run.plan.lock_key} lost: {reason}"
        + ("; stopping the job" if kill else "; the job goes on unprotected"),
        level="error",
        lock_key=run.plan.lock_key,
        backend=shown_url(job.lock_backend),
        on_lock_lost=job.on_lock_lost,
        error=reason,
    )
    if kill:
        stop.stop(signal.SIGTERM, f"lock lost: {reason}")


def _file_gone(run: Run, retaken: bool) -> None:
    """The lock file was removed or renamed under us (a tmp cleaner): say what we did."""
    key = run.plan.lock_key
    if retaken:
        message = f"{run.plan.name}: lock file of {key} was removed while held; re-created and re-taken"
    else:
        message = f"{run.plan.name}: lock file of {key} was removed while held and another process holds the new one"
    run.records.emit(
        "lock.restored" if retaken else "lock.lost",
        message,
        level="warning" if retaken else "error",
        lock_key=key,
        lock_file=run.plan.lock_file,
    )


def busy(run: Run, holder: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    """The lock.busy record naming the real holder (read now unless given); the exit code on_busy
    gives, and the holder."""
    plan = run.plan
    if holder is None:
        holder = locker(run).holder()
    on_busy = plan.job.on_busy
    skip = on_busy == "skip"
    if holder.get("leftover"):
        whose = f", a leftover of run {holder.get('run_id')} (its runjob has exited)"
    else:
        whose = f" (run {holder['run_id']})" if holder.get("run_id") else ""
    run.records.emit(
        "lock.busy",
        f"{plan.name}: lock {plan.lock_key} is held by pid {holder.get('pid')}{whose}; "
        + ("skipped" if skip else "not run (exit 75)"),
        level="info" if skip and not holder.get("leftover") else "warning",
        lock_key=plan.lock_key,
        holder_pid=holder.get("pid"),
        holder_run_id=holder.get("run_id"),
        on_busy=on_busy,
    )
    return (EXIT_OK if skip else EXIT_BUSY), holder
