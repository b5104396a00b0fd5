"""Telling owners (SPEC section 5): the responsible owner gets a page, the accountable
owner a domain notice, each through its channels (`command`: the record as JSON on
stdin; `webhook`: a JSON POST). All deliveries run in parallel, each limited to 10 s;
a failure is logged as `notify.error` and never changes the exit code.
"""

from __future__ import annotations

import os

from runjob.observer import Observer

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from runjob.config import Job, Registry
    from runjob.logs import Records
    from runjob.runner import Outcome, Run

LIMIT_S = 10.0
NOTIFY_STATUSES = ("failure", "timeout", "killed")
ROLES = ("responsible", "accountable")


class Delivery:
    def __init__(self, owner: str, role: str, channel: str, target: Any, payload: bytes, cwd: str) -> None:
        self.owner, self.role, self.channel = owner, role, channel
        self.target = target
        self.cwd = cwd
        self.payload = payload
        self.error: str | None = "did not finish within the limit"
        import threading  # imported when someone is told, not on every run

        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            if self.channel == "command":
                _command(self.target, self.payload, self.cwd)
            else:
                from runjob import web

                web.send(self.target, self.payload, timeout=LIMIT_S)
            self.error = None
        except OSError as e:
            self.error = str(e)


def _command(argv: list[str], payload: bytes, cwd: str) -> None:
    import subprocess

    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                process_group=0, cwd=cwd)  # fmt: skip
    except OSError as e:
        raise OSError(f"cannot start {argv[0]}: {e.strerror}") from None
    try:
        _, err = proc.communicate(payload, timeout=LIMIT_S)
    except subprocess.TimeoutExpired:
        import signal

        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise OSError(f"{argv[0]} did not finish within {LIMIT_S:g}s (killed)") from None
    if proc.returncode != 0:
        tail = err.decode("utf-8", "replace").strip()[-300:]
        raise OSError(f"{argv[0]} exited with {proc.returncode}" + (f": {tail}" if tail else ""))


def start(registry: Registry, job: Job, kind: str, record: dict[str, Any]) -> list[Delivery]:
    """Start delivering `record` to the job's owners; join with `finish`."""
    import json

    deliveries = []
    for role in ROLES:
        owner = job.owners.get(role)
        if not owner:
            continue
        channels = registry.owners[owner]
        payload = json.dumps(_payload(job, kind, role, owner, record)).encode()
        for channel in ("command", "webhook"):
            if channels.get(channel):
                deliveries.append(Delivery(owner, role, channel, channels[channel], payload, registry.base_dir))
    for d in deliveries:
        d.thread.start()
    return deliveries


def finish(deliveries: list[Delivery], records: Records) -> None:
    """Wait for the deliveries (each is bounded) and log how each went."""
    for d in deliveries:
        d.thread.join(LIMIT_S + 2)
        fields = {"owner": d.owner, "role": d.role, "channel": d.channel}
        if d.error is None:
            records.emit("notify.sent", f"told {d.owner} ({d.role}) by {d.channel}", **fields)
        else:
            records.emit("notify.error", f"could not tell {d.owner} ({d.role}) by {d.channel}: {d.error}",
                         level="error", **fields, error=d.error)  # fmt: skip


def _payload(job: Job, kind: str, role: str, owner: str, record: dict[str, Any]) -> dict[str, Any]:
    notice = "page" if role == "responsible" else "domain notice"
    return {"kind": kind, "role": role, "notice": notice, "owner": owner, "description": job.description,
            "idempotency": job.idempotency, "record": record}  # fmt: skip


class Notifier(Observer):
    """The runner observer: tells the owners when a run ends in failure, timeout or killed."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.pending: list[Delivery] = []

    def warn(self, run: Run, record: dict[str, Any]) -> None:
        """A run.duration warning: tell the owners without holding the run up."""
        self.pending += start(self.registry, run.plan.job, "duration", record)

    def end(self, run: Run, outcome: Outcome) -> None:
        if outcome.status in NOTIFY_STATUSES:
            self.pending += start(self.registry, run.plan.job, outcome.status, outcome.record)
        finish(self.pending, run.records)
        self.pending = []
