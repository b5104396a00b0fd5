"""`runjob worker`: take queued runs and run each as a normal `runjob NAME` in its own process.

A run in its own process keeps everything a run has (lock, timeout, retries, records,
history, owners) and keeps the worker small. The worker holds a lease on each entry in
hand and renews it with its heartbeat; if the worker dies the lease lapses and the entry
is pending again. A child's exit and SIGTERM wake the loop at once (a wakeup fd), so a
freed slot is refilled without polling; only an idle worker polls the queue.
"""

from __future__ import annotations

import os
import select
import signal
import time

from runjob.queue import outcome
from runjob.queue.backends import open_store
from runjob.queue.forked import Forked, RunPath
from runjob.queue.store import lease_of, new_id, stop_grace_of
from runjob.records.logs import JsonSink, Records, new_run_id
from runjob.registry import loader

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from runjob.queue.store import Store
    from runjob.registry.config import Registry

IDLE_POLL = 0.05  # an idle worker looks for due entries this often: enqueue-to-start stays well under 100 ms


class WorkerFlags:
    """`runjob worker --concurrency N --burst --max-jobs N --max-time D`, as given."""

    __slots__ = ("burst", "concurrency", "max_jobs", "max_time")

    def __init__(self, concurrency: int, burst: bool, max_jobs: int | None, max_time: str | None) -> None:
        self.concurrency, self.burst, self.max_jobs, self.max_time = concurrency, burst, max_jobs, max_time


class Limits:
    def __init__(self, flags: WorkerFlags) -> None:
        self.concurrency, self.burst, self.max_jobs = flags.concurrency, flags.burst, flags.max_jobs
        max_time = _seconds(flags.max_time)
        self.until = None if max_time is None else time.monotonic() + max_time


class Worker:
    def __init__(self, registry: Registry, store: Store, limits: Limits, path: RunPath) -> None:
        self.registry, self.store, self.limits, self.path = registry, store, limits, path
        self.id = f"{os.uname().nodename}-{os.getpid()}-{new_id()[:6]}"
        self.records = Records(JsonSink(), "worker", new_run_id(), os.environ.get("RUNJOB_CORRELATION_ID"))
        self.lease = lease_of(registry)
        self.beat_every = max(0.05, min(self.lease / 3, 5.0))
        self.running: dict[str, tuple[Forked, str, dict[str, Any]]] = {}
        self.wake: tuple[int, ...] = ()  # the loop's wakeup pipe: a forked run closes it
        self.taken = 0
        self.stop_at: float | None = None  # set by SIGTERM: the end of stop_grace
        self.stopped_runs = False
        self.next_beat = 0.0

    def take(self) -> bool:
        """Start one due entry if a slot is free and the limits allow; True if one started."""
        full = len(self.running) >= self.limits.concurrency
        done = self.limits.max_jobs is not None and self.taken >= self.limits.max_jobs
        late = self.limits.until is not None and time.monotonic() >= self.limits.until
        if full or done or late or self.stop_at is not None:
            return False
        entry = self.store.claim(self.id, self.lease)
        if entry is None:
            return False
        self.taken += 1
        run_id = new_run_id()
        env = dict(os.environ, RUNJOB_CLAIM_RUN_ID=run_id, RUNJOB_QUEUE_ID=entry["id"])
        proc = Forked(outcome.args(self.registry.path, entry), env, self.wake + self.store.private_fds(), self.path)
        self.running[entry["id"]] = (proc, run_id, entry)
        self.records.emit(
            "queue.taken",
            f"{entry['job']}: took {entry['id']} (run {run_id})",
            queue_id=entry["id"],
            params=entry["params"],
            priority=entry["priority"],
            run=run_id,
            worker=self.id,
        )
        return True

    def settle(self, entry: dict[str, Any], run_id: str, returncode: int) -> None:
        """Success: the entry is done. Stopped by our SIGTERM: pending again. Else: dead letter."""
        code = 128 - returncode if returncode < 0 else returncode
        fields = {"queue_id": entry["id"], "params": entry["params"], "run": run_id, "exit_code": code}
        if code == 0:
            self.store.finish(entry["id"], self.id)
            self.records.emit("queue.done", f"{entry['job']}: {entry['id']} done", **fields)
        elif self.stopped_runs:
            self.store.release(entry["id"], self.id)
            self.records.emit(
                "queue.released",
                f"{entry['job']}: {entry['id']} stopped at shutdown; pending again",
                level="warning",
                **fields,
            )
        else:
            tail = outcome.stderr_tail(self.registry.state_dir, run_id)
            self.store.bury(entry["id"], self.id, code, tail)
            self.records.emit(
                "queue.dead",
                f"{entry['job']}: {entry['id']} failed (exit {code}); dead letter",
                level="error",
                **fields,
                stderr_tail=tail,
            )

    def reap(self) -> None:
        for entry_id, (proc, run_id, entry) in list(self.running.items()):
            code = proc.poll()
            if code is None:
                continue
            del self.running[entry_id]
            self.settle(entry, run_id, code)

    def beat(self) -> None:
        if time.monotonic() < self.next_beat:
            return
        self.next_beat = time.monotonic() + self.beat_every
        self.store.renew(list(self.running), self.id, self.lease)
        info = {"host": os.uname().nodename, "pid": os.getpid(), "running": len(self.running), "taken": self.taken}
        self.store.beat(self.id, info, self.beat_every * 3)

    def finished(self) -> bool:
        """Nothing in hand, and nothing more to take (SIGTERM, a limit, or --burst with nothing due)."""
        if self.running:
            return False
        if self.stop_at is not None:
            return True
        if self.limits.max_jobs is not None and self.taken >= self.limits.max_jobs:
            return True
        return self.limits.until is not None and time.monotonic() >= self.limits.until

    def stop_overdue(self) -> None:
        """stop_grace is over: stop the runs in hand as a SIGTERM stops a run (group, kill_grace)."""
        if self.stop_at is None or self.stopped_runs or time.monotonic() < self.stop_at:
            return
        self.stopped_runs = True
        for proc, _, _ in self.running.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)


def work(config_path: str | None, limits: WorkerFlags, path: RunPath) -> int:
    """`runjob worker`: take due entries and run each in a forked copy of this process."""
    from runjob.errors import UsageError

    if limits.concurrency < 1:
        raise UsageError(f"--concurrency must be at least 1, got {limits.concurrency}")
    path.preload()
    registry = loader.load(config_path, cached=True)
    store = open_store(registry)
    worker = Worker(registry, store, Limits(limits), path)
    _freeze()
    try:
        _loop(worker, stop_grace_of(registry))
    finally:
        store.gone(worker.id)
        store.close()
    worker.records.emit(
        "worker.stopped",
        f"worker {worker.id} stopped after {worker.taken} run(s)",
        worker=worker.id,
        taken=worker.taken,
    )
    return 0


def _loop(worker: Worker, stop_grace: float) -> None:
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    worker.wake = (wake_r, wake_w)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wakeup fd hears of it

    def on_term(*_: object) -> None:
        if worker.stop_at is None:
            worker.stop_at = time.monotonic() + stop_grace

    signal.signal(signal.SIGTERM, on_term)
    worker.records.emit(
        "worker.started", f"worker {worker.id} started", worker=worker.id, concurrency=worker.limits.concurrency
    )
    while True:
        worker.beat()
        worker.reap()
        worker.stop_overdue()
        if worker.take():
            continue
        if worker.finished() or (worker.limits.burst and not worker.running):
            return
        timeout = IDLE_POLL if len(worker.running) < worker.limits.concurrency else worker.beat_every
        if select.select([wake_r], [], [], timeout)[0]:
            while True:
                try:
                    if not os.read(wake_r, 512):
                        break
                except BlockingIOError:
                    break


def _freeze() -> None:
    """Move everything the worker holds out of the cyclic GC's reach before the first fork: a
    collection in a forked run would otherwise write to every object's header and so copy
    nearly every page it shares with the worker (about a millisecond of each short run)."""
    import gc

    gc.collect()
    gc.freeze()


def _seconds(text: str | None) -> float | None:
    from runjob.durations import flag

    return flag(text, "--max-time")
