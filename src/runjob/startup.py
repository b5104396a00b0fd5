"""What every runjob process does first, and how its errors end it.

Shared by the entry point (main.py) and a queued run forked from its worker
(queue/forked.py), which is a whole `runjob NAME` without a new interpreter: the forked
child must not import main.py (main -> cli/app -> queue/worker -> queue/forked would be a
cycle), so what both need lives here.
"""

from __future__ import annotations

import os
import sys

from runjob.errors import EXIT_INTERNAL, ConfigError, RunjobError, one_line

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
    from collections.abc import Callable
else:
    try:  # the C module: `signal` wraps it only to add enums (see process.py)
        import _signal as signal
    except ImportError:  # pragma: no cover
        import signal


def prepare() -> None:
    """Standard streams, inherited descriptors, the locale and SIGCHLD as a run needs them."""
    standard_streams()
    keep_inherited_descriptors()
    undo_locale_coercion()
    # Started with SIGCHLD ignored (a parent's choice, inherited over exec), the kernel
    # reaps our child itself and its exit status is lost: take the default back.
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)


def contained(call: Callable[[], int]) -> int:
    """`call()`'s exit code; a RunjobError is one line on stderr and its exit code, anything else a bug."""
    try:
        return call()
    except RunjobError as e:
        report(e)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141
    except Exception:
        import traceback

        traceback.print_exc()
        sys.stderr.write("runjob: internal error (a bug): please report it with the traceback above\n")
        return EXIT_INTERNAL


def config_option(args: list[str]) -> tuple[str | None, list[str]]:
    """(the `--config`/`-c` value, the words after it) for args that may start with it."""
    if args[:1] in (["--config"], ["-c"]) and len(args) >= 2:
        return args[1], args[2:]
    if args and args[0].startswith("--config="):
        return args[0].partition("=")[2], args[1:]
    return None, args


def run_words(args: list[str]) -> int:
    """A run given as `[--config F] [run] NAME k=v ...` (a queued run, in a copy of its worker
    forked for it): what `runjob NAME k=v ...` does, with no command-line dispatch."""
    prepare()

    def run() -> int:
        from runjob.cli.run import run_job

        config, rest = config_option(args)
        rest = rest[1:] if rest[:1] == ["run"] else rest  # a job named like a subcommand
        return run_job(config, rest[0], rest[1:])

    return contained(run)


def keep_inherited_descriptors() -> None:
    """Descriptors above 2 that our parent left open (cron's, a shell's, a service manager's)
    are marked close-on-exec, so no child or owner's command gets them (SPEC section 12):
    os.posix_spawn, unlike subprocess, closes nothing by itself. The lock is handed to the
    child on purpose (process.spawn makes that one fd inheritable for the spawn)."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except (OSError, ValueError):
        return  # no /proc: nothing to mark that we could name
    for fd in fds:
        if fd > 2:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass  # the descriptor listdir itself used, closed by now


def standard_streams() -> None:
    """Open any of fds 0-2 that is closed on /dev/null, before runjob opens anything else.

    A crontab `>&-` starts us with fd 1 closed: the next file we open (the lock file)
    would become fd 1 and records would be written into it. Python sets sys.stdout (or
    stdin/stderr) to None for a stream closed at start; give it a working one back.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            # O_RDWR: one mode that suits stdin as well as stdout/stderr. The lowest free fd
            # is this one (the lower ones are open by now), but say so rather than trust it.
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:  # pragma: no cover
                os.dup2(null, fd)
                os.close(null)
    for name, fd, mode in (("stdin", 0, "r"), ("stdout", 1, "w"), ("stderr", 2, "w")):
        if getattr(sys, name) is None:
            # the stream lives as long as the process: no context manager
            stream = open(fd, mode, closefd=False, errors="backslashreplace" if fd == 2 else None)  # noqa: SIM115
            setattr(sys, name, stream)


COERCED = ("C.UTF-8", "C.utf8", "UTF-8")  # what Python's locale coercion (PEP 538) sets LC_CTYPE to


def undo_locale_coercion() -> None:
    """Take out the LC_CTYPE that Python itself put into our environment at start-up.

    Started with no usable locale (cron: no LANG, no LC_*), the interpreter sets
    LC_CTYPE=C.UTF-8 in its own environ; every child would inherit it and, say, grep a
    Latin-1 file differently than under cron. Our own locale is set by then and stays.
    The environment we were given is in /proc/self/environ (setenv does not touch it).
    """
    if os.environ.get("LC_CTYPE") not in COERCED:
        return
    try:
        with open("/proc/self/environ", "rb") as f:
            given = f.read().split(b"\0")
    except OSError:
        return  # cannot tell: keep it
    if not any(item.startswith(b"LC_CTYPE=") for item in given):
        del os.environ["LC_CTYPE"]


def report(e: RunjobError) -> None:
    lines = e.lines() if isinstance(e, ConfigError) else [one_line(str(e))]
    sys.stderr.write("".join(f"runjob: {line}\n" for line in lines))
