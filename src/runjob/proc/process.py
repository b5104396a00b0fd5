"""One attempt: spawn the child in its own process group, stream its output, enforce
the timeout, and stop it when runjob is told to stop.

The loop polls the child's pipes, a pidfd (readable when the child exits, so no
busy-waiting) and the wakeup fd of runjob's signal handlers. Stopping is always the
same sequence (yacron's RunningJob.cancel, `timeout(1)`): SIGTERM to the whole group,
then SIGKILL to the group after `kill_grace` if anything in it is still alive.
"""

from __future__ import annotations

import os
import select
import time

from runjob.errors import EXIT_INTERNAL, EXIT_TIMEOUT
from runjob.proc import executable, reaper
from runjob.proc.outflow import Outflow as Outflow
from runjob.proc.spawn import STOP_SIGNALS as STOP_SIGNALS
from runjob.proc.spawn import spawn, spawn_error
from runjob.records.output import READ_SIZE

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal as signal  # the types of what _signal has
else:
    try:  # the C module: `signal` wraps it only to add enums, and importing enum costs ~7 ms here
        import _signal as signal
    except ImportError:  # pragma: no cover
        import signal

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from runjob.records.output import StreamHandler

DRAIN_S = 0.5  # after the child exits, how long we keep reading pipes a daemon it left may hold open
READ_BURST = 16  # chunks read in a row while the pipe stays full (1 MiB), then the loop's checks
LAST_READS = 16  # at the very end, at most this many chunks more: a daemon may write without pause
POLL_FALLBACK_S = 0.1  # child-exit check interval where pidfd_open is missing


class Interrupted(Exception):
    """A stop signal came during a step that cannot poll the wakeup fd (see Stop.interruptible)."""


class Stop:
    """Why and when the run must stop (a signal to runjob, a lost lock), and notices from
    other threads, which run on the main thread: only it writes records."""

    def __init__(self) -> None:
        self.signum = 0
        self.at = 0.0
        self.reason = ""
        self.pgid = 0  # the running child's process group, for the handler to forward to
        self.wake_fd = -1  # the signal wakeup pipe: writing to it wakes the supervise loop...
        self.wake_read = -1  # ...which polls this end
        self.notices: list[Callable[[], None]] = []
        self.interruptible = False  # handle() raises Interrupted (once) while this is set
        self.reaper = os.getpid() == 1  # as PID 1 (a container's first process) orphans are ours to reap

    def handle(self, signum: int, frame: object) -> None:
        if not self.signum:
            self.signum, self.at = signum, time.monotonic()
        if self.pgid:
            reaper.killpg(self.pgid, signum)
        if self.interruptible:  # a blocking step (waiting for the lock) that must end now
            self.interruptible = False
            raise Interrupted(signum)

    def stop(self, signum: int, reason: str) -> None:
        """Stop the run as if runjob got `signum`, saying why."""
        if not self.signum:
            self.reason = reason
        self.handle(signum, None)

    def notify(self, notice: Callable[[], None]) -> None:
        """From another thread: run `notice` on the main thread soon."""
        self.notices.append(notice)
        try:
            os.write(self.wake_fd, b"n")
        except OSError:
            pass

    def run_notices(self) -> None:
        while self.notices:
            self.notices.pop(0)()


class Watch:
    """A one-shot alarm checked by the supervise loop (run.duration past its expected max)."""

    def __init__(self, due: float | None, fire: Callable[[], None]) -> None:
        self.due = due
        self.fire = fire

    def check(self, now: float) -> None:
        if self.due is not None and now >= self.due:
            self.due = None
            self.fire()


class Command:
    """What one attempt runs and within what bounds: argv in cwd with env, its stdout as
    `output` says, `pass_fds` inherited (the file lock), SIGTERM at `timeout` seconds and
    SIGKILL `grace` seconds later. The same for every attempt of a run."""

    __slots__ = ("argv", "cwd", "env", "grace", "output", "pass_fds", "timeout")

    def __init__(
        self,
        argv: list[str],
        cwd: str,
        env: dict[str, str],
        output: str,
        pass_fds: tuple[int, ...],
        timeout: float,
        grace: float,
    ) -> None:
        self.argv, self.cwd, self.env, self.output, self.pass_fds = argv, cwd, env, output, pass_fds
        self.timeout, self.grace = timeout, grace


class Result:
    """How one attempt ended."""

    def __init__(self, exit_code: int, status: str, duration: float, max_rss_kb: int = 0, error: str = ""):
        self.exit_code = exit_code
        self.status = status  # success, failure, timeout, killed
        self.duration = duration
        self.max_rss_kb = max_rss_kb
        self.error = error  # why the command could not start, if it could not


def run(
    command: Command, handlers: tuple[StreamHandler, StreamHandler], stop: Stop, watch: Watch | None = None
) -> Result:
    started = time.monotonic()
    argv, cwd, env = command.argv, command.cwd, command.env
    try:
        program = executable.resolve(argv[0], cwd, env)
        pid, streams = spawn(program, argv, cwd, env, command.output, command.pass_fds)
    except executable.Problem as e:
        return Result(e.exit_code, "failure", time.monotonic() - started, error=str(e))
    except OSError as e:
        code, message = spawn_error(e, argv[0], cwd)
        return Result(code, "failure", time.monotonic() - started, error=message)
    stop.pgid = pid
    if stop.signum:  # a signal came while we were spawning
        reaper.killpg(pid, stop.signum)
    fds = {fd: handlers[0 if name == "stdout" else 1] for name, fd in streams.items()}
    try:
        loop = _Supervision(pid, fds, started, command, stop, watch or Watch(None, lambda: None), handlers[0].sink)
        return loop.run()
    except Exception as e:  # noqa: BLE001  (a bug or an output failure: the child must not outlive its supervision)
        reaper.killpg(pid, signal.SIGKILL)
        reaper.wait_gone(pid)
        message = f"runjob failed while supervising the command ({type(e).__name__}: {e}); it was killed"
        return Result(EXIT_INTERNAL, "failure", time.monotonic() - started, error=message)
    finally:
        stop.pgid = 0
        for fd in streams.values():
            os.close(fd)


class _Supervision:
    """One supervise loop: what was sent to the child's group, and when the loop may end
    (the child reaped, its pipes closed or drained for DRAIN_S)."""

    def __init__(
        self,
        pid: int,
        streams: dict[int, StreamHandler],
        started: float,
        command: Command,
        stop: Stop,
        watch: Watch,
        sink: Any,
    ) -> None:
        self.pid, self.started, self.grace, self.stop, self.watch = pid, started, command.grace, stop, watch
        self.streams = dict(streams)
        self.poller, self.pidfd = _poller(pid, self.streams, stop)
        self.outflow = Outflow(sink, self.poller, self.streams)
        self.deadline = started + command.timeout
        self.kill_at: float | None = None
        self.timed_out = False
        self.status: tuple[int, int] | None = None  # (wait status, max rss)
        self.drain_until: float | None = None
        self.grown: set[int] = set()  # the pipes already given a bigger buffer (_grow)

    def run(self) -> Result:
        try:
            while True:
                self.stop.run_notices()
                self.outflow.update()
                now = time.monotonic()
                self.watch.check(now)
                self._escalate(now)
                if self._over(now):
                    break
                self._poll(now)
        finally:
            if self.pidfd >= 0:
                os.close(self.pidfd)
            for fd, handler in list(self.streams.items()):
                _read_rest(fd, handler)
        assert self.status is not None
        return _result(self.status, self.started, self.timed_out, self.stop)

    def _escalate(self, now: float) -> None:
        """A stop signal or the timeout: SIGTERM (forwarded by Stop, or sent here), then
        SIGKILL to the group once the grace is over."""
        if self.stop.signum and self.kill_at is None:
            self.kill_at = self.stop.at + self.grace
        if not self.timed_out and self.status is None and now >= self.deadline:
            self.timed_out = True
            reaper.killpg(self.pid, signal.SIGTERM)
            self.kill_at = now + self.grace if self.kill_at is None else min(self.kill_at, now + self.grace)
        if self.kill_at is not None and now >= self.kill_at:
            reaper.killpg(self.pid, signal.SIGKILL)
            self.kill_at = float("inf")  # sent; nothing more to escalate

    def _over(self, now: float) -> bool:
        """Reap what exited; True once the loop may end."""
        if self.status is None:
            self.status = reaper.reap(self.pid)
        if self.stop.reaper:
            reaper.reap_orphans(self.pid if self.status is None else 0)
        if self.status is None:
            return False
        stopping = self.timed_out or self.stop.signum
        if stopping and self.kill_at != float("inf") and reaper.group_alive(self.pid):
            return False  # the leader is gone but others in its group still run: wait for grace
        if not self.streams:
            return True
        if self.drain_until is None:
            self.drain_until = now + DRAIN_S
        return now >= self.drain_until

    def _poll(self, now: float) -> None:
        running = not self.timed_out and self.status is None
        times = [self.deadline if running else None, self.kill_at, self.drain_until, self.watch.due]
        for fd, _event in self.poller.poll(_wait_ms(now, times, self.pidfd < 0 or not running)):
            if fd == self.pidfd:
                self.poller.unregister(fd)
                os.close(fd)
                self.pidfd = -1
            elif fd == self.stop.wake_read:
                _drain_wakeup(fd)
            elif fd in self.streams and not self.outflow.paused:
                self._read_burst(fd)

    def _read_burst(self, fd: int) -> None:
        """Read while the pipe keeps giving whole chunks, up to READ_BURST of them: a child that
        prints fast fills the pipe again while its last chunk is turned into records, and one
        pass of the loop (poll, wait4, the timers) per 64 KiB was a tenth of runjob's time."""
        for n in range(READ_BURST):
            if not _read(fd, self.streams, self.poller):
                return
            if n == 0 and fd not in self.grown:
                self._grow(fd)
            self.outflow.update()  # a slow reader of runjob's stdout pauses the reading here too
            if self.outflow.paused:
                return

    def _grow(self, fd: int) -> None:
        """A child that filled its 64 KiB pipe gets up to 1 MiB: it writes ahead while runjob
        turns a chunk into records, instead of waiting to be woken each 64 KiB (runjob sat
        in poll() for about a seventh of a chatty run). A quiet child never gets one."""
        from runjob.records.sink import grow_pipe  # loaded already: the run's sink

        self.grown.add(fd)
        grow_pipe(fd)


def _poller(pid: int, streams: dict[int, StreamHandler], stop: Stop) -> tuple[select.poll, int]:
    """A poll set of the child's pipes, a pidfd of the child (-1 if none) and the wakeup fd."""
    poller = select.poll()
    for fd in streams:
        os.set_blocking(fd, False)
        poller.register(fd, select.POLLIN)
    pidfd = _pidfd(pid)
    if pidfd >= 0:
        poller.register(pidfd, select.POLLIN)
    if stop.wake_read >= 0:
        poller.register(stop.wake_read, select.POLLIN)
    return poller, pidfd


def _result(status: tuple[int, int], started: float, timed_out: bool, stop: Stop) -> Result:
    wait_status, rss = status
    duration = time.monotonic() - started
    if stop.signum:
        return Result(128 + stop.signum, "killed", duration, rss)
    if timed_out:
        return Result(EXIT_TIMEOUT, "timeout", duration, rss)
    if wait_status == reaper.LOST:
        return Result(EXIT_INTERNAL, "failure", duration, rss, error="the exit status of the command was lost")
    code = os.waitstatus_to_exitcode(wait_status)
    if code < 0:
        return Result(128 - code, "killed", duration, rss)
    return Result(code, "success" if code == 0 else "failure", duration, rss)


def _wait_ms(now: float, times: list[float | None], poll_child: bool) -> int | None:
    """Milliseconds until the next thing to do (None: until an fd wakes us)."""
    waits = [t - now for t in times if t is not None and t != float("inf")]
    if poll_child:  # no pidfd, or the leader is gone and we watch its group
        waits.append(POLL_FALLBACK_S)
    # At most a day: poll() takes a C int of milliseconds (about 24.8 days), and waking once a day costs nothing.
    return max(0, min(int(min(waits) * 1000) + 1, 86_400_000)) if waits else None


def _read(fd: int, streams: dict[int, StreamHandler], poller: select.poll) -> bool:
    """One chunk of the pipe fed to its handler; True if it was a whole READ_SIZE (more may wait)."""
    try:
        chunk = os.read(fd, READ_SIZE)
    except BlockingIOError:
        return False
    if chunk:
        streams[fd].feed(chunk)
        return len(chunk) == READ_SIZE
    poller.unregister(fd)
    streams.pop(fd).finish()
    return False


def _read_rest(fd: int, handler: StreamHandler) -> None:
    """What is already in the pipe, within bounds (a daemon may hold it open and keep writing)."""
    try:
        for _ in range(LAST_READS):
            chunk = os.read(fd, READ_SIZE)
            if not chunk:
                break
            handler.feed(chunk)
    except BlockingIOError:
        pass
    handler.finish()


def _pidfd(pid: int) -> int:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return -1


def _drain_wakeup(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass
