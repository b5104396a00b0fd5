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

from runjob.errors import EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, EXIT_TIMEOUT
from runjob.output import READ_SIZE

try:  # the C module: `signal` wraps it only to add enums, and importing enum costs ~7 ms here
    import _signal as signal
except ImportError:  # pragma: no cover
    import signal  # type: ignore[no-redef]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

    from runjob.output import StreamHandler

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
DRAIN_S = 0.5  # after the child exits, how long we keep reading pipes a daemon it left may hold open
LAST_READS = 16  # at the very end, at most this many chunks more: a daemon may write without pause
POLL_FALLBACK_S = 0.1  # child-exit check interval where pidfd_open is missing


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
    watch: Watch | None = None,
) -> Result:
    started = time.monotonic()
    try:
        pid, streams = spawn(argv, cwd, env, output, pass_fds)
    except OSError as e:
        code, message = spawn_error(e, argv[0], cwd)
        return Result(code, "failure", time.monotonic() - started, error=message)
    stop.pgid = pid
    if stop.signum:  # a signal came while we were spawning
        _killpg(pid, stop.signum)
    fds = {fd: handlers[0 if name == "stdout" else 1] for name, fd in streams.items()}
    try:
        return _supervise(pid, fds, started, timeout, grace, stop, watch or Watch(None, lambda: None))
    finally:
        stop.pgid = 0
        for fd in streams.values():
            os.close(fd)


def spawn(argv: list[str], cwd: str, env: dict[str, str], output: str,
          pass_fds: tuple[int, ...]) -> tuple[int, dict[str, int]]:  # fmt: skip
    """Start argv in its own process group with stdin from /dev/null; (pid, read ends of its pipes).

    os.posix_spawn (vfork + exec) rather than subprocess: importing subprocess costs
    runjob ~10 ms of start-up here (threading, selectors, locale and, through locale, re).
    What subprocess would do for us is done here: the program is looked up on the
    child's PATH, signals Python ignores are reset, only `pass_fds` are inherited, and
    cwd is entered around the spawn (runjob uses absolute paths, and no other thread
    exists yet that could mind).
    """
    program = _find_program(argv[0], env)
    pipes: dict[str, int] = {}
    ours: list[int] = []  # our copies of the child's pipe ends, closed after the spawn
    actions: list[tuple[Any, ...]] = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)]
    streams = [("stdout", 1)] if output == "json" else []
    if output == "discard":
        actions.append((os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0))
    back = os.open(".", os.O_RDONLY | os.O_CLOEXEC)
    try:
        for name, target in streams + [("stderr", 2)]:
            r, w = _pipe()
            pipes[name] = r
            ours.append(w)
            actions.append((os.POSIX_SPAWN_DUP2, w, target))
        for fd in pass_fds:
            os.set_inheritable(fd, True)
        os.chdir(cwd)
        pid = os.posix_spawn(program, argv, env, file_actions=actions, setpgroup=0, setsigmask=(),
                             setsigdef=(signal.SIGPIPE, signal.SIGXFSZ, *STOP_SIGNALS))  # fmt: skip
    except BaseException:
        for fd in pipes.values():
            os.close(fd)
        raise
    finally:
        os.fchdir(back)
        os.close(back)
        for fd in ours:
            os.close(fd)
        for fd in pass_fds:
            os.set_inheritable(fd, False)
    return pid, pipes


def _pipe() -> tuple[int, int]:
    """A pipe whose ends are above 2: dup2 onto 1 or 2 must never be a no-op."""
    r, w = os.pipe()
    while r <= 2 or w <= 2:
        import fcntl

        r, w = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3) if fd <= 2 else fd for fd in (r, w))
    return r, w


def _find_program(name: str, env: dict[str, str]) -> str:
    """`name` as exec would find it on the child's PATH (not runjob's)."""
    if "/" in name:
        return name
    denied = None
    for directory in os.get_exec_path(env):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            if os.access(path, os.X_OK):
                return path
            denied = path
    if denied:
        raise PermissionError(13, "Permission denied", denied)
    raise FileNotFoundError(2, "No such file or directory", name)


def _supervise(pid: int, streams: dict[int, StreamHandler], started: float, timeout: float, grace: float,
               stop: Stop, watch: Watch) -> Result:  # fmt: skip
    streams = dict(streams)
    poller = select.poll()
    for fd in streams:
        os.set_blocking(fd, False)
        poller.register(fd, select.POLLIN)
    pidfd = _pidfd(pid)
    if pidfd >= 0:
        poller.register(pidfd, select.POLLIN)
    if stop.wake_read >= 0:
        poller.register(stop.wake_read, select.POLLIN)

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
                elif fd == stop.wake_read:
                    _drain_wakeup(fd)
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
    # At most a day: poll() takes a C int of milliseconds (about 24.8 days), and waking once a day costs nothing.
    return max(0, min(int(min(waits) * 1000) + 1, 86_400_000)) if waits else None


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
