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

from runjob.errors import EXIT_INTERNAL, EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, EXIT_TIMEOUT
from runjob.proc import executable, reaper
from runjob.records.logs import PENDING_MAX
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

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
DRAIN_S = 0.5  # after the child exits, how long we keep reading pipes a daemon it left may hold open
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
        program = executable.resolve(argv[0], cwd, env)
        pid, streams = spawn(program, argv, cwd, env, output, pass_fds)
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
        return _supervise(pid, fds, started, timeout, grace, stop, watch or Watch(None, lambda: None), handlers[0].sink)
    except Exception as e:  # noqa: BLE001  (a bug or an output failure: the child must not outlive its supervision)
        reaper.killpg(pid, signal.SIGKILL)
        reaper.wait_gone(pid)
        message = f"runjob failed while supervising the command ({type(e).__name__}: {e}); it was killed"
        return Result(EXIT_INTERNAL, "failure", time.monotonic() - started, error=message)
    finally:
        stop.pgid = 0
        for fd in streams.values():
            os.close(fd)


def spawn(
    program: str, argv: list[str], cwd: str, env: dict[str, str], output: str, pass_fds: tuple[int, ...]
) -> tuple[int, dict[str, int]]:
    """Start argv in its own process group with stdin from /dev/null; (pid, read ends of its pipes).

    os.posix_spawn (vfork + exec) rather than subprocess: importing subprocess costs
    runjob ~10 ms of start-up here (threading, selectors, locale and, through locale, re).
    What subprocess would do for us is done here: the program was looked up on the
    child's PATH (executable.resolve), signals Python ignores are reset, only `pass_fds` are inherited, and
    cwd is entered around the spawn (runjob uses absolute paths, and no other thread
    exists yet that could mind).
    """
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
        pid = os.posix_spawn(
            program,
            argv,
            env,
            file_actions=actions,
            setpgroup=0,
            setsigmask=(),
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ, *STOP_SIGNALS),
        )
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


class Outflow:
    """Records waiting for a slow reader of runjob's stdout (logs.JsonSink.pending) go out
    when the pipe has room; while they are over PENDING_MAX the child's pipes are not read,
    so the child waits on its own writes and runjob's memory stays bounded. Nothing here
    blocks: the timeout and signals are enforced whatever the reader does."""

    def __init__(self, sink: Any, poller: select.poll, pipes: Any) -> None:
        self.sink = sink if getattr(sink, "nonblocking", False) else None
        self.poller = poller
        self.pipes = pipes  # the open pipes' fds (a dict or set the caller keeps current)
        self.watching = False  # POLLOUT registered on the sink's fd
        self.paused = False  # the pipes unregistered

    def add(self, fd: int) -> None:
        """A new pipe to read (the supervisor's instances come and go)."""
        self.pipes.add(fd)
        if not self.paused:
            self.poller.register(fd, select.POLLIN)

    def drop(self, fd: int) -> None:
        self.pipes.discard(fd)
        if not self.paused:
            self.poller.unregister(fd)

    def update(self) -> None:
        if self.sink is None:
            return
        self.sink.flush()
        backlog = self.sink.backlog()
        if bool(backlog) != self.watching:
            self.watching = bool(backlog)
            if self.watching:
                self.poller.register(self.sink.fd, select.POLLOUT)
            else:
                self.poller.unregister(self.sink.fd)
        over = backlog > PENDING_MAX
        if over != self.paused:
            self.paused = over
            for fd in self.pipes:
                if over:
                    self.poller.unregister(fd)
                else:
                    self.poller.register(fd, select.POLLIN)


def _supervise(
    pid: int,
    streams: dict[int, StreamHandler],
    started: float,
    timeout: float,
    grace: float,
    stop: Stop,
    watch: Watch,
    sink: Any = None,
) -> Result:
    streams = dict(streams)
    poller, pidfd = _poller(pid, streams, stop)
    outflow = Outflow(sink, poller, streams)
    deadline = started + timeout
    kill_at: float | None = None
    timed_out = False
    status: tuple[int, int] | None = None  # (wait status, max rss)
    drain_until: float | None = None
    try:
        while True:
            stop.run_notices()
            outflow.update()
            now = time.monotonic()
            watch.check(now)
            if stop.signum and kill_at is None:
                kill_at = stop.at + grace
            if not timed_out and status is None and now >= deadline:
                timed_out = True
                reaper.killpg(pid, signal.SIGTERM)
                kill_at = now + grace if kill_at is None else min(kill_at, now + grace)
            if kill_at is not None and now >= kill_at:
                reaper.killpg(pid, signal.SIGKILL)
                kill_at = float("inf")  # sent; nothing more to escalate
            if status is None:
                status = reaper.reap(pid)
            if stop.reaper:
                reaper.reap_orphans(pid if status is None else 0)
            if status is not None:
                stopping = timed_out or stop.signum
                if stopping and kill_at != float("inf") and reaper.group_alive(pid):
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
                elif fd in streams and not outflow.paused:
                    _read(fd, streams, poller)
    finally:
        if pidfd >= 0:
            os.close(pidfd)
        for fd, handler in list(streams.items()):
            _read_rest(fd, handler)
    assert status is not None
    return _result(status, started, timed_out, stop)


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
