"""A queued run in a forked copy of the worker: `runjob NAME k=v` without a new interpreter.

Starting Python and importing the run path is most of a short run's cost; a fork of the
worker, which has loaded much of it already, skips that and then goes through the same
`main()` as `runjob NAME` (its lock, timeout, retries, records, history, owners). The
worker has no threads, and the child never touches the worker's store connection: it
leaves with os._exit, so nothing inherited is flushed or closed twice.
"""

from __future__ import annotations

import os
import signal
import sys


class Forked:
    """The parts of a Popen the worker uses: pid, poll(), returncode, send_signal()."""

    def __init__(self, args: list[str], env: dict[str, str], close: tuple[int, ...]) -> None:
        sys.stdout.flush()  # nothing buffered may be written twice
        sys.stderr.flush()
        self.returncode: int | None = None
        self.pid = os.fork()
        if self.pid == 0:
            _child(args, env, close)

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, signum)


def _child(args: list[str], env: dict[str, str], close: tuple[int, ...]) -> None:
    code = 125
    try:
        signal.set_wakeup_fd(-1)
        for fd in close:
            os.close(fd)
        for signum in (signal.SIGTERM, signal.SIGCHLD, signal.SIGINT):
            signal.signal(signum, signal.SIG_DFL if signum != signal.SIGINT else signal.default_int_handler)
        os.environ.clear()
        os.environ.update(env)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        from runjob import safefs
        from runjob.startup import run_words

        safefs._trusted.clear()  # the run checks its directories itself, as a fresh `runjob NAME` would

        code = run_words(args)
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001 - a forked child must never return into the worker's loop
        import traceback

        traceback.print_exc()
    finally:
        os._exit(code)
