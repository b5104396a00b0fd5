"""The `runjob` entry point.

`runjob NAME [k=v ...]` (the crontab form, run every minute on busy hosts) is dispatched
here without loading typer or rich, and so are `--version` and, off a terminal, `list`,
`status`, `history` and `tick` (cli/fastpath.py); everything else goes to the typer app in cli/app.py.
Every RunjobError becomes one line on stderr and its exit code; anything else is a bug.
"""

from __future__ import annotations

import os
import sys

from runjob.errors import EXIT_INTERNAL, ConfigError, RunjobError, one_line
from runjob.registry.schema import SUBCOMMANDS

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
else:
    try:  # the C module: `signal` wraps it only to add enums (see proc/process.py)
        import _signal as signal
    except ImportError:  # pragma: no cover
        import signal


def main(argv: list[str] | None = None, fast: bool = True) -> int:
    """runjob with `argv` (default: sys.argv[1:]); `fast=False` sends every command to typer."""
    standard_streams()
    keep_inherited_descriptors()
    undo_locale_coercion()
    # Started with SIGCHLD ignored (a parent's choice, inherited over exec), the kernel
    # reaps our child itself and its exit status is lost: take the default back.
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    args = sys.argv[1:] if argv is None else argv
    try:
        if fast and "enqueue" in args[:3]:  # `runjob enqueue` is scripted in loops: it skips typer too
            from runjob.queue.fastcli import enqueue_args

            code = enqueue_args(args)
            if code is not None:
                return code
        crontab, args = crontab_form(args)
        if crontab is not None:
            from runjob.cli.run import run_job

            config, name, words = crontab
            return run_job(config, name, words)
        if fast:
            from runjob.cli.fastpath import answer

            code = answer(args, sys.stdout.isatty())
            if code is not None:
                return code
        from runjob.cli.app import run_cli

        return run_cli(args)
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


def crontab_form(args: list[str]) -> tuple[tuple[str | None, str, list[str]] | None, list[str]]:
    """((config, job, params), args) for `[--config F] NAME [k=v ...]`; else (None, args for typer).

    A job name followed by flags (`runjob NAME k=v --format json`) becomes `run NAME ...`.
    """
    config, rest = None, args
    if rest[:1] in (["--config"], ["-c"]) and len(rest) >= 2:
        config, rest = rest[1], rest[2:]
    elif rest and rest[0].startswith("--config="):
        config, rest = rest[0].partition("=")[2], rest[1:]
    if not rest or rest[0].startswith("-") or rest[0] in SUBCOMMANDS:
        return None, args
    if any(a.startswith("-") for a in rest[1:]):
        return None, args[: len(args) - len(rest)] + ["run"] + rest
    return (config, rest[0], rest[1:]), args


def report(e: RunjobError) -> None:
    lines = e.lines() if isinstance(e, ConfigError) else [one_line(str(e))]
    sys.stderr.write("".join(f"runjob: {line}\n" for line in lines))
