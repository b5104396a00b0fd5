"""Starting the child: its own process group, stdin from /dev/null, its output into pipes."""

from __future__ import annotations

import os

from runjob.errors import EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal as signal  # the types of what _signal has
    from typing import Any
else:
    try:  # the C module: `signal` wraps it only to add enums, and importing enum costs ~7 ms here
        import _signal as signal
    except ImportError:  # pragma: no cover
        import signal

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def spawn_error(e: OSError, argv0: str, cwd: str) -> tuple[int, str]:
    """The exit code (126/127) and message for a command that could not start."""
    if isinstance(e, FileNotFoundError):
        if e.filename == cwd and not os.path.isdir(cwd):
            return EXIT_NOT_FOUND, f"working directory not found: {cwd}"
        return EXIT_NOT_FOUND, f"command not found: {argv0}"
    if isinstance(e, PermissionError):
        return EXIT_NOT_EXECUTABLE, f"command not executable: {argv0} ({e.strerror})"
    return EXIT_NOT_EXECUTABLE, f"cannot execute {argv0}: {e.strerror}"


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
    actions = _file_actions(output, pipes, ours)
    back = os.open(".", os.O_RDONLY | os.O_CLOEXEC)
    try:
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


def _file_actions(output: str, pipes: dict[str, int], ours: list[int]) -> list[tuple[Any, ...]]:
    """posix_spawn's file actions: stdin from /dev/null; stdout into a pipe (json), to
    /dev/null (discard) or ours (passthrough); stderr into a pipe (for its tail). The pipes'
    read ends go into `pipes`, their write ends into `ours`."""
    actions: list[tuple[Any, ...]] = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)]
    streams = [("stdout", 1)] if output == "json" else []
    if output == "discard":
        actions.append((os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0))
    try:
        for name, target in [*streams, ("stderr", 2)]:
            r, w = _pipe()
            pipes[name] = r
            ours.append(w)
            actions.append((os.POSIX_SPAWN_DUP2, w, target))
    except BaseException:
        for fd in [*pipes.values(), *ours]:
            os.close(fd)
        raise
    return actions


def _pipe() -> tuple[int, int]:
    """A pipe whose ends are above 2: dup2 onto 1 or 2 must never be a no-op."""
    r, w = os.pipe()
    while r <= 2 or w <= 2:
        import fcntl

        r, w = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3) if fd <= 2 else fd for fd in (r, w))
    return r, w
