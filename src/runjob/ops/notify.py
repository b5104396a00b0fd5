"""Telling owners (SPEC section 5): the responsible owner gets a page, the accountable
owner a domain notice, each through its channels (`command`: the record as JSON on
stdin; `webhook`: a JSON POST). All deliveries run in parallel under one shared deadline
(`notify_timeout` in [defaults], 10 s by default), which a new signal to runjob cuts
short; a failure is logged as `notify.error` and never changes the exit code.

An owner's command gets runjob's environment without any job's secrets and without the
Redis password variables, only descriptors 0-2, and its stderr is kept as a short tail
(bounded memory, however much it writes). Webhook URLs are logged as scheme and host.
"""

from __future__ import annotations

import os
import time

from runjob.run.model import Observer

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from runjob.records.logs import Records
    from runjob.registry.config import Job, Registry
    from runjob.run.model import Outcome, Run

LIMIT_S = 10.0
NOTIFY_STATUSES = ("failure", "timeout", "killed")
ROLES = ("responsible", "accountable")
TAIL_BYTES = 1024  # of a notifier's stderr, for the error message
SLICE_S = 0.05


class Delivery:
    """One message to one owner over one channel, sent by its own thread until `deadline`."""

    def __init__(
        self,
        owner: str,
        role: str,
        channel: str,
        target: Any,
        payload: bytes,
        cwd: str,
        env: dict[str, str],
        limit: float,
    ) -> None:
        self.owner, self.role, self.channel = owner, role, channel
        self.target = target
        self.cwd = cwd
        self.env = env
        self.payload = payload
        self.limit = limit
        self.deadline = time.monotonic() + limit
        self.cancelled = False  # set by the main thread (deadline passed, or a signal): stop at once
        self.signalled = False  # ...and why: a signal to runjob
        self.error: str | None = f"did not finish within {limit:g}s"
        import threading  # imported when someone is told, not on every run

        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            if self.channel == "command":
                _command(self)
            else:
                from runjob.ops import web

                web.send(
                    self.target,
                    self.payload,
                    timeout=self.limit,
                    deadline=self.deadline,
                    cancelled=lambda: self.signalled,
                )
            self.error = None
        except OSError as e:
            self.error = str(e)
        except Exception as e:  # noqa: BLE001 - a delivery never takes runjob down, whatever failed
            self.error = f"{type(e).__name__}: {str(e)[:200]}"


def _command(d: Delivery) -> None:
    """Run the owner's command with the payload on stdin, until it exits, the deadline passes or a signal."""
    import subprocess

    argv = d.target
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            process_group=0,
            cwd=d.cwd,
            env=d.env,
            close_fds=True,
        )
    except OSError as e:
        raise OSError(f"cannot start {argv[0]}: {e.strerror}") from None
    try:
        tail = _exchange(proc, d)
    finally:
        if proc.poll() is None:
            import signal

            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdin.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    if tail is None:
        why = "cut short by a signal to runjob" if d.signalled else f"did not finish within {d.limit:g}s"
        raise OSError(f"{argv[0]} {why} (killed)")
    if proc.returncode != 0:
        text = tail.decode("utf-8", "replace").strip()[-300:]
        raise OSError(f"{argv[0]} exited with {proc.returncode}" + (f": {text}" if text else ""))


def _exchange(proc: Any, d: Delivery) -> bytes | None:
    """Feed stdin and keep the stderr tail until stderr closes and the process exits; None if stopped first."""
    import selectors

    with selectors.DefaultSelector() as sel:
        return _pump(proc, d, sel)


def _pump(proc: Any, d: Delivery, sel: Any) -> bytes | None:
    import selectors

    infd, errfd = proc.stdin.fileno(), proc.stderr.fileno()
    os.set_blocking(infd, False)
    sel.register(errfd, selectors.EVENT_READ)
    pending, tail = memoryview(d.payload), b""
    if pending:
        sel.register(infd, selectors.EVENT_WRITE)
    else:
        proc.stdin.close()
    while sel.get_map() or proc.poll() is None:
        left = d.deadline - time.monotonic()
        if left <= 0 or d.cancelled:
            return None
        if not sel.get_map():
            time.sleep(min(left, SLICE_S))
            continue
        for key, _ in sel.select(min(left, SLICE_S)):
            if key.fd == errfd:
                chunk = os.read(errfd, 65536)
                tail = (tail + chunk)[-TAIL_BYTES:]  # bounded: a notifier may write gigabytes
                if not chunk:
                    sel.unregister(errfd)
            else:
                pending = _feed(infd, pending, sel, proc)
    return tail


def _feed(infd: int, pending: memoryview, sel: Any, proc: Any) -> memoryview:
    """Write what the pipe takes; close stdin when all is written or the reader is gone."""
    try:
        pending = pending[os.write(infd, pending) :]
    except BlockingIOError:
        return pending
    except OSError:  # EPIPE: the notifier does not read its stdin, which is its business
        pending = pending[len(pending) :]
    if not pending:
        sel.unregister(infd)
        proc.stdin.close()
    return pending


def owner_env(registry: Registry) -> dict[str, str]:
    """runjob's environment without any job's secrets or the Redis password variables."""
    withheld = registry.secret_names()
    return {k: v for k, v in os.environ.items() if k not in withheld}


def start(registry: Registry, job: Job, kind: str, record: dict[str, Any]) -> list[Delivery]:
    """Start delivering `record` to the job's owners; join with `finish`."""
    import json

    deliveries = []
    env = owner_env(registry)
    for role in ROLES:
        owner = job.owners.get(role)
        if not owner:
            continue
        channels = registry.owners[owner]
        payload = json.dumps(_payload(job, kind, role, owner, record)).encode()
        for channel in ("command", "webhook"):
            if channels.get(channel):
                deliveries.append(
                    Delivery(
                        owner,
                        role,
                        channel,
                        channels[channel],
                        payload,
                        registry.base_dir,
                        env,
                        registry.notify_timeout,
                    )
                )
    for d in deliveries:
        d.thread.start()
    return deliveries


def finish(deliveries: list[Delivery], records: Records, cancelled: Any = None) -> None:
    """Wait for the deliveries up to their deadlines (one shared limit, a signal ends it) and log each."""
    for d in deliveries:
        while d.thread.is_alive() and (left := d.deadline - time.monotonic()) > 0:
            if cancelled is not None and cancelled():
                for other in deliveries:
                    other.signalled = other.cancelled = True
                break
            d.thread.join(min(left, SLICE_S))
    for d in deliveries:
        d.cancelled = d.cancelled or d.thread.is_alive()
        d.thread.join(1.0)  # it kills its command at once now; a webhook thread is left to die
        if d.thread.is_alive() and d.signalled:
            d.error = "cut short by a signal to runjob"
        _report(d, records)


def _report(d: Delivery, records: Records) -> None:
    fields = {"owner": d.owner, "role": d.role, "channel": d.channel}
    if d.error is None:
        records.emit("notify.sent", f"told {d.owner} ({d.role}) by {d.channel}", **fields)
    else:
        records.emit(
            "notify.error",
            f"could not tell {d.owner} ({d.role}) by {d.channel}: {d.error}",
            level="error",
            **fields,
            error=d.error,
        )


def _payload(job: Job, kind: str, role: str, owner: str, record: dict[str, Any]) -> dict[str, Any]:
    notice = "page" if role == "responsible" else "domain notice"
    return {
        "kind": kind,
        "role": role,
        "notice": notice,
        "owner": owner,
        "description": job.description,
        "idempotency": job.idempotency,
        "record": record,
    }


class Notifier(Observer):
    """The runner observer: tells the owners when a run ends in failure, timeout or killed."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.pending: list[Delivery] = []

    def warn(self, run: Run, record: dict[str, Any]) -> None:
        """A run.duration warning: tell the owners without holding the run up."""
        self.pending += start(self.registry, run.plan.job, "duration", record)

    def end(self, run: Run, outcome: Outcome) -> None:
        try:
            if outcome.status in NOTIFY_STATUSES:
                self.pending += start(self.registry, run.plan.job, outcome.status, outcome.record)
        finally:
            stop = getattr(run, "stop", None)
            seen = stop.signum if stop is not None else 0  # the signal that ended the run is still notified
            finish(self.pending, run.records, lambda: stop is not None and stop.signum != seen)
            self.pending = []
