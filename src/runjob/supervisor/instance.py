"""One running copy of a worker: its process group, its output pipes, its progress and its stop.

Each instance is the leader of its own process group (start_new_session), so a stop, a
memory sample and the final SIGKILL reach everything it started. The leader is spawned
with PR_SET_PDEATHSIG = SIGKILL (prctl through ctypes, set between fork and exec): if
runjob itself is SIGKILLed, the kernel kills each instance leader, so none keeps running
unsupervised.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

from runjob.records.output import LineSplitter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

PR_SET_PDEATHSIG = 1
LINE_MAX = 64 * 1024  # as for jobs: a longer line is cut and marked truncated


def _die_with_parent(parent: int) -> Callable[[], None]:
    """preexec_fn: the kernel SIGKILLs this process when runjob dies (checked once more after
    the prctl, in case runjob died before it took effect)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(137)

    return preexec


class Instance:
    """Slot `index` of a worker; `pid` is 0 while it waits for a (re)start."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.pid = 0
        self.restarts = 0  # restarts of this slot since supervise started
        self.recent: list[float] = []  # monotonic times of the restarts that count against `burst`
        self.started = 0.0  # monotonic
        self.started_at = 0.0  # wall clock, for status
        self.progress = 0.0  # monotonic time of the last output line or heartbeat touch
        self.progress_at = 0.0  # wall clock of the same
        self.heartbeat_mtime = 0
        self.stopping = ""  # why it was asked to stop: memory, lifetime, stale, stop
        self.kill_at: float | None = None
        self.restart_at: float | None = None  # when a waiting slot starts again
        self.finished = False  # exited and not to be restarted (policy on-failure, exit 0)
        self.rss = 0
        self.pipes: dict[int, list[Any]] = {}  # read fd -> [stream name, its LineSplitter]
        self.proc: Any = None

    def spawn(self, argv: list[str], cwd: str | None, env: dict[str, str]) -> None:
        """Start the instance; OSError if the program cannot be started."""
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out_w,
                stderr=err_w,
                start_new_session=True,
                preexec_fn=_die_with_parent(os.getpid()),
            )
        except BaseException:
            os.close(out_r)
            os.close(err_r)
            raise
        finally:
            os.close(out_w)
            os.close(err_w)
        self.proc = proc
        self.pid = proc.pid
        for fd, stream in ((out_r, "stdout"), (err_r, "stderr")):
            os.set_blocking(fd, False)
            self.pipes[fd] = [stream, LineSplitter(LINE_MAX)]
        now = time.monotonic()
        self.started = self.progress = now
        self.started_at = self.progress_at = time.time()
        self.stopping, self.kill_at, self.restart_at, self.rss = "", None, None, 0

    def mark_progress(self) -> None:
        self.progress, self.progress_at = time.monotonic(), time.time()

    def read(self, fd: int, emit: Callable[[Instance, str, str, bool], None]) -> bool:
        """Read what `fd` has now; each whole line goes to `emit`. True if anything was read
        (at end of file the fd is closed and dropped from `pipes`)."""
        stream, splitter = self.pipes[fd]
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return False
        if not data:
            rest = splitter.finish()
            if rest:
                emit(self, stream, rest.decode("utf-8", "replace"), False)
            self.close(fd)
            return False
        # The jobs' splitter: a cut line's rest is dropped up to its newline (never a record of
        # its own, however the pipe chunks it), and a bare CR ends a redraw, as for jobs.
        whole = False
        for lines, cut, _ in splitter.feed(data):
            for line in lines:
                emit(self, stream, line.decode("utf-8", "replace"), cut)
            whole = whole or not cut
        if whole:
            self.mark_progress()
        return True

    def close(self, fd: int) -> None:
        os.close(fd)
        del self.pipes[fd]

    def signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, reason: str, signum: int, grace: float) -> None:
        """stop_signal to the whole group now; SIGKILL once `grace` has passed (the loop's check)."""
        if self.stopping:
            return
        self.stopping = reason
        self.kill_at = time.monotonic() + grace
        self.signal_group(signum)

    def reap(self) -> int | None:
        """The exit code (128+N for a signal) if the leader has exited, else None."""
        code: int | None = self.proc.poll()
        if code is None:
            return None
        return 128 - code if code < 0 else code
