"""`runjob supervise NAME`: keep `instances` copies of a worker running, in the foreground.

One thread, one poll loop: the instances' output pipes and the signal wakeup pipe are
polled with a timeout that is the nearest deadline (a restart due, a stop grace ending,
a lifetime or heartbeat limit, the next memory sample). Each instance restarts on its
own with exponential backoff; more than `burst` restarts of one instance within `within`
gives up on the whole worker.
"""

from __future__ import annotations

import os
import select
import signal
import time

from runjob.proc.process import Outflow
from runjob.supervisor.instance import Instance
from runjob.supervisor.state import StateFile

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from runjob.records.logs import Records

SAMPLE_S = 0.25  # memory sampling with memory_max set: a leak is seen long before the OOM killer acts
STATUS_SAMPLE_S = 2.0  # without it, RSS is sampled only for `status`
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Supervisor:
    def __init__(
        self,
        name: str,
        worker: dict[str, Any],
        env: dict[str, str],
        records: Records,
        state: StateFile,
        on_giveup: Callable[[dict[str, Any]], None],
    ) -> None:
        self.name, self.w, self.env, self.records, self.state = name, worker, env, records, state
        self.on_giveup = on_giveup  # tells the owners
        self.slots = [Instance(i) for i in range(worker["instances"])]
        self.stop_signum = getattr(signal, "SIG" + worker["stop_signal"])
        self.shutdown = ""  # "stop" (a signal to runjob) or "giveup"
        self.signalled = 0
        self.hurry = False
        self.next_sample = 0.0
        self.poller = select.poll()
        self.outflow = Outflow(records.sink, self.poller, set())
        self.wake_r, self.wake_w = os.pipe()

    def run(self) -> int:
        self._signals()
        self._kill_leftovers()
        for inst in self.slots:
            self._start(inst)
        while not self._done():
            self._wait()
            self._reap()
            self._check(time.monotonic())
            self.state.write(self.slots)
            self.outflow.update()
        self.state.write(self.slots, running=False)
        self.records.sink.close()  # what a slow reader has not taken yet gets its last chance
        return 1 if self.shutdown == "giveup" else 0

    def _signals(self) -> None:
        for fd in (self.wake_r, self.wake_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self.wake_w)
        self.poller.register(self.wake_r, select.POLLIN)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # only to wake the poll through the wakeup fd
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)

    def _kill_leftovers(self) -> None:
        groups = []
        for pgid in self.state.leftovers():
            try:
                os.killpg(pgid, signal.SIGKILL)
                groups.append(pgid)
            except (ProcessLookupError, PermissionError):
                pass  # nothing left in it
        if groups:
            self.records.emit(
                "worker.leftovers",
                f"killed what a killed supervisor left running: process groups {', '.join(map(str, groups))}",
                level="warning",
                pgids=groups,
            )

    def _on_signal(self, signum: int, frame: object) -> None:
        if self.shutdown == "stop":
            self.hurry = True  # a second signal (Ctrl-C twice): no more grace
        self.signalled = self.signalled or signum

    def _done(self) -> bool:
        running = [i for i in self.slots if i.pid]
        if self.shutdown:
            return not running
        return not running and all(i.finished for i in self.slots)

    def _wait(self) -> None:
        now = time.monotonic()
        due = [t for t in self._deadlines() if t is not None]
        timeout = max(0, min(due) - now) if due else None
        for fd, _ in self.poller.poll(None if timeout is None else int(timeout * 1000) + 1):
            if fd == self.wake_r:
                while True:
                    try:
                        if not os.read(fd, 512):
                            break
                    except BlockingIOError:
                        break
                continue
            inst = next((i for i in self.slots if fd in i.pipes), None)
            if inst is not None:
                inst.read(fd, self._output)
                if fd not in inst.pipes:
                    self.outflow.drop(fd)

    def _deadlines(self) -> list[float | None]:
        out: list[float | None] = [self.next_sample if any(i.pid for i in self.slots) else None]
        for inst in self.slots:
            out += [inst.kill_at, inst.restart_at]
            if inst.pid and not inst.stopping:
                out.append(inst.started + self.w["max_lifetime"] if self.w["max_lifetime"] else None)
                out.append(
                    min(inst.progress + self.w["heartbeat_timeout"], time.monotonic() + 1.0)
                    if self.w["heartbeat_timeout"]
                    else None
                )  # the file is polled each second
        return out

    def _output(self, inst: Instance, stream: str, line: str, truncated: bool) -> None:
        """One run.output record, as for jobs: a JSON object line is kept whole under `data`."""
        from runjob.records import child_json

        data = None if truncated else child_json.parse(line)
        ids: dict[str, Any] = {"stream": stream, "attempt": inst.restarts + 1, "instance": inst.index}
        if data is not None:
            self.records.emit("run.output", child_json.message_of(data), child_json.level_of(data), **ids, data=data)
        else:
            if truncated:
                ids["truncated"] = True
            self.records.emit("run.output", line, **ids, line=line)

    def _start(self, inst: Instance) -> None:
        hb = self.state.heartbeat(inst.index)
        env = self.env | {
            "RUNJOB_HEARTBEAT_FILE": hb,
            "RUNJOB_WORKER": self.name,
            "RUNJOB_INSTANCE": str(inst.index),
            "RUNJOB_ATTEMPT": str(inst.restarts + 1),
        }
        try:
            inst.spawn(self.w["command"], self.w["cwd"], env)
        except OSError as e:
            code = 127 if isinstance(e, FileNotFoundError) else 126
            self.records.emit(
                "worker.exit",
                f"instance {inst.index} could not start: {e.strerror}",
                level="error",
                instance=inst.index,
                pid=0,
                supervisor_pid=os.getpid(),
                exit_code=code,
                reason="exit",
            )
            self._after_exit(inst, code, "exit")
            return
        inst.heartbeat_mtime = _mtime(hb)  # StateFile.heartbeat created it: a touch changes this
        for fd in inst.pipes:
            self.outflow.add(fd)
        self.records.emit(
            "worker.start",
            f"instance {inst.index} started (pid {inst.pid})",
            instance=inst.index,
            pid=inst.pid,
            supervisor_pid=os.getpid(),
            restarts=inst.restarts,
        )

    def _reap(self) -> None:
        for inst in self.slots:
            if not inst.pid:
                continue
            code = inst.reap()
            if code is None:
                continue
            inst.signal_group(signal.SIGKILL)  # whatever the leader left behind in its group goes with it
            for fd in list(inst.pipes):
                self.outflow.drop(fd)
                while inst.read(fd, self._output):  # what it wrote before it ended
                    pass
                if fd in inst.pipes:
                    inst.close(fd)
            reason = inst.stopping or "exit"
            level = "info" if reason in ("stop", "lifetime") or (reason == "exit" and code == 0) else "warning"
            self.records.emit(
                "worker.exit",
                f"instance {inst.index} (pid {inst.pid}) ended: {reason}, exit code {code}",
                level=level,
                instance=inst.index,
                pid=inst.pid,
                supervisor_pid=os.getpid(),
                exit_code=code,
                reason=reason,
            )
            inst.pid = 0
            self._after_exit(inst, code, reason)

    def _after_exit(self, inst: Instance, code: int, reason: str) -> None:
        if self.shutdown:
            return
        if reason == "exit" and code == 0 and self.w["restart"]["policy"] == "on-failure":
            inst.finished = True
            return
        now = time.monotonic()
        policy = self.w["restart"]
        if reason != "lifetime":  # a planned recycle is not a failure: no backoff, not counted
            inst.recent = [t for t in inst.recent if now - t < policy["within"]] + [now]
            if len(inst.recent) > policy["burst"]:
                self._give_up(inst)
                return
        delay = 0.0 if reason == "lifetime" else min(policy["max_delay"], policy["delay"] * 2 ** (len(inst.recent) - 1))
        inst.restarts += 1
        inst.restart_at = now + delay
        self.records.emit(
            "worker.restart",
            f"instance {inst.index} restarts in {delay:g}s ({reason})",
            instance=inst.index,
            restarts=inst.restarts,
            delay_s=round(delay, 3),
            reason=reason,
        )

    def _give_up(self, inst: Instance) -> None:
        policy = self.w["restart"]
        record = self.records.emit(
            "worker.giveup",
            f"instance {inst.index} restarted more than {policy['burst']} times within "
            f"{policy['within']:g}s: stopping the worker",
            level="error",
            instance=inst.index,
            restarts=inst.restarts,
            burst=policy["burst"],
            within_s=policy["within"],
        )
        self._stop_all("giveup")
        self.on_giveup(record)

    def _stop_all(self, why: str) -> None:
        self.shutdown = why
        for inst in self.slots:
            inst.restart_at = None
            if inst.pid:
                inst.stop("stop", self.stop_signum, self.w["stop_grace"])

    def _check(self, now: float) -> None:
        if self.signalled and not self.shutdown:
            self._stop_all("stop")  # first: a second signal from here on hurries the stop
            self.records.emit("worker.stop", f"signal {self.signalled}: stopping every instance", signal=self.signalled)
        if self.hurry:
            self.hurry = False
            self.records.emit("worker.stop", "a second signal: SIGKILL to every instance now", level="warning")
            for inst in self.slots:
                inst.kill_at = now if inst.pid else None
        if now >= self.next_sample and any(i.pid for i in self.slots):
            self._sample(now)
        for inst in self.slots:
            if inst.pid:
                self._limits(inst, now)
            elif inst.restart_at is not None and now >= inst.restart_at and not self.shutdown:
                self._start(inst)

    def _limits(self, inst: Instance, now: float) -> None:
        if inst.kill_at is not None and now >= inst.kill_at:
            inst.signal_group(signal.SIGKILL)
            inst.kill_at = None
        if inst.stopping:
            return
        mtime = _mtime(self.state.heartbeat_path(inst.index))
        if mtime != inst.heartbeat_mtime:
            inst.heartbeat_mtime = mtime
            inst.mark_progress()
        w = self.w
        if w["memory_max"] and inst.rss > w["memory_max"]:
            inst.stop("memory", self.stop_signum, w["stop_grace"])
        elif w["max_lifetime"] and now - inst.started >= w["max_lifetime"]:
            inst.stop("lifetime", self.stop_signum, w["stop_grace"])
        elif w["heartbeat_timeout"] and now - inst.progress >= w["heartbeat_timeout"]:
            inst.stop("stale", self.stop_signum, w["stop_grace"])

    def _sample(self, now: float) -> None:
        from runjob.supervisor.memory import group_rss

        rss = group_rss({i.pid for i in self.slots if i.pid})
        for inst in self.slots:
            if inst.pid:
                inst.rss = rss.get(inst.pid, 0)
        self.next_sample = now + (SAMPLE_S if self.w["memory_max"] else STATUS_SAMPLE_S)


def _mtime(path: str) -> int:
    try:
        return os.stat(path, follow_symlinks=False).st_mtime_ns
    except OSError:
        return 0
