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
import signal
import time

from runjob.errors import EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, EXIT_TIMEOUT
from runjob.output import READ_SIZE

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

    from runjob.output import StreamHandler

DRAIN_S = 0.5  # after the child exits, how long we keep reading pipes a daemon it left may hold open
POLL_FALLBACK_S = 0.1  # child-exit check interval where pidfd_open is missing


class Stop:
    """Why and when the run must stop (a signal to runjob, a lost lock), and notices from
    other threads, which run on the main thread: only it writes records."""

    def __init__(self) -> None:
        self.signum = 0
        self.at = 0.0
        self.reason = ""
        self.pgid = 0  # the running child's process group, for the handler to forward to
        self.wake_fd = -1  # the signal wakeup pipe: writing to it wakes the supervise loop
        self.notices: list[Callable[[], None]] = []

    def handle(self, signum: int, frame: object) -> None:
        if not self.signum:
            self.signum, self.at = signum, time.monotonic()
        if self.pgid:
            _killpg(self.pgid, signum)

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


class Result:
    """How one attempt ended."""

    def __init__(self, exit_code: int, status: str, duration: float, max_rss_kb: int = 0, error: str = ""):
        self.exit_code = exit_code
        self.status = status  # success, failure, timeout, killed
        self.duration = duration
        self.max_rss_kb = max_rss_kb
        self.error = error  # why the command could not start, if it could not


def spawn_error(e: OSError, argv0: str, cwd: str) -> tuple[int, str]:
    """The exit code (126/127) and message for a command that could not start."""
    if isinstance(e, FileNotFoundError):
        if e.filename == cwd and not os.path.isdir(cwd):
            return EXIT_NOT_FOUND, f"working directory not found: {cwd}"
        return EXIT_NOT_FOUND, f"command not found: {argv0}"
    if isinstance(e, PermissionError):
        return EXIT_NOT_EXECUTABLE, f"command not executable: {argv0} ({e.strerror})"
    return EXIT_NOT_EXECUTABLE, f"cannot execute {argv0}: {e.strerror}"


def run(
    argv: list[str],
    cwd: str,
    env: dict[str, str],
    output: str,
    pass_fds: tuple[int, ...],
    timeout: float,
    grace: float,
    handlers: tuple[StreamHandler, StreamHandler],
    stop: Stop,
    wakeup_fd: int,
    watch: Watch | None = None,
) -> Result:
    import subprocess

    started = time.monotonic()
    stdout = {"json": subprocess.PIPE, "passthrough": None, "discard": subprocess.DEVNULL}[output]
    try:
        child = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE,
            pass_fds=pass_fds, process_group=0,
        )  # fmt: skip
    except OSError as e:
        code, message = spawn_error(e, argv[0], cwd)
        return Result(code, "failure", time.monotonic() - started, error=message)
    stop.pgid = child.pid
    if stop.signum:  # a signal came while we were spawning
        _killpg(child.pid, stop.signum)
    try:
        return _supervise(child, started, timeout, grace, handlers, stop, wakeup_fd, watch or Watch(None, int))
    finally:
        stop.pgid = 0
        for pipe in (child.stdout, child.stderr):
            if pipe is not None:
                pipe.close()


def _supervise(child, started, timeout, grace, handlers, stop, wakeup_fd, watch):  # type: ignore[no-untyped-def]
    pid = child.pid
    streams = {}
    if child.stdout is not None:
        streams[child.stdout.fileno()] = handlers[0]
    streams[child.stderr.fileno()] = handlers[1]
    poller = select.poll()
    for fd in streams:
        os.set_blocking(fd, False)
        poller.register(fd, select.POLLIN)
    pidfd = _pidfd(pid)
    if pidfd >= 0:
        poller.register(pidfd, select.POLLIN)
    poller.register(wakeup_fd, select.POLLIN)

    deadline = started + timeout
    kill_at: float | None = None
    timed_out = False
    status: tuple[int, int] | None = None  # (wait status, max rss)
    drain_until: float | None = None
    try:
        while True:
            stop.run_notices()
            now = time.monotonic()
            watch.check(now)
            if stop.signum and kill_at is None:
                kill_at = stop.at + grace
            if not timed_out and status is None and now >= deadline:
                timed_out = True
                _killpg(pid, signal.SIGTERM)
                kill_at = now + grace if kill_at is None else min(kill_at, now + grace)
            if kill_at is not None and now >= kill_at:
                _killpg(pid, signal.SIGKILL)
                kill_at = float("inf")  # sent; nothing more to escalate
            if status is None:
                status = _reap(pid)
            if status is not None:
                stopping = timed_out or stop.signum
                if stopping and kill_at != float("inf") and _group_alive(pid):
                    pass  # the leader is gone but others in its group still run: wait for grace
                elif not streams:
                    break
                elif drain_until is None:
                    drain_until = now + DRAIN_S
                elif now >= drain_until:
                    break
            running = not timed_out and status is None
            times = [deadline if running else None, kill_at, drain_until, watch.due]
            wait_ms = _wait_ms(now, times, pidfd < 0 or not running)
            for fd, _event in poller.poll(wait_ms):
                if fd == pidfd:
                    poller.unregister(pidfd)
                    os.close(pidfd)
                    pidfd = -1
                elif fd == wakeup_fd:
                    _drain_wakeup(wakeup_fd)
                elif fd in streams:
                    _read(fd, streams, poller)
    finally:
        if pidfd >= 0:
            os.close(pidfd)
        for fd, handler in list(streams.items()):
            _read_rest(fd, handler)
    assert status is not None
    return _result(status, started, timed_out, stop)


def _result(status: tuple[int, int], started: float, timed_out: bool, stop: Stop) -> Result:
    wait_status, rss = status
    duration = time.monotonic() - started
    code = os.waitstatus_to_exitcode(wait_status)
    if stop.signum:
        return Result(128 + stop.signum, "killed", duration, rss)
    if timed_out:
        return Result(EXIT_TIMEOUT, "timeout", duration, rss)
    if code < 0:
        return Result(128 - code, "killed", duration, rss)
    return Result(code, "success" if code == 0 else "failure", duration, rss)


def _wait_ms(now: float, times: list[float | None], poll_child: bool) -> int | None:
    """Milliseconds until the next thing to do (None: until an fd wakes us)."""
    waits = [t - now for t in times if t is not None and t != float("inf")]
    if poll_child:  # no pidfd, or the leader is gone and we watch its group
        waits.append(POLL_FALLBACK_S)
    return max(0, int(min(waits) * 1000) + 1) if waits else None


def _read(fd: int, streams: dict[int, StreamHandler], poller: select.poll) -> None:
    try:
        chunk = os.read(fd, READ_SIZE)
    except BlockingIOError:
        return
    if chunk:
        streams[fd].feed(chunk)
        return
    poller.unregister(fd)
    streams.pop(fd).finish()


def _read_rest(fd: int, handler: StreamHandler) -> None:
    """What is already in the pipe (never blocking: a daemon may hold it open)."""
    try:
        while chunk := os.read(fd, READ_SIZE):
            handler.feed(chunk)
    except BlockingIOError:
        pass
    handler.finish()


def _reap(pid: int) -> tuple[int, int] | None:
    try:
        got, wait_status, usage = os.wait4(pid, os.WNOHANG)
    except ChildProcessError:
        return (0, 0)
    return None if got == 0 else (wait_status, usage.ru_maxrss)


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


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
