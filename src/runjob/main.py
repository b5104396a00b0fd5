"""The `runjob` entry point.

`runjob NAME [k=v ...]` (the crontab form, run every minute on busy hosts) is dispatched
here without loading typer or rich; everything else goes to the typer app in cli.py.
Every RunjobError becomes one line on stderr and its exit code; anything else is a bug.
"""

from __future__ import annotations

import os
import sys

from runjob.errors import EXIT_INTERNAL, ConfigError, RunjobError
from runjob.schema import SUBCOMMANDS


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        fast = crontab_form(args)
        if fast is not None:
            from runjob.commands.run import run_job

            config, name, words = fast
            return run_job(config, name, words)
        from runjob.cli import run_cli

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


def crontab_form(args: list[str]) -> tuple[str | None, str, list[str]] | None:
    """(config, job, params) if args are `[--config F] NAME [k=v ...]`, else None."""
    config = None
    if args[:1] == ["--config"] and len(args) >= 2:
        config, args = args[1], args[2:]
    elif args and args[0].startswith("--config="):
        config, args = args[0].partition("=")[2], args[1:]
    if not args or args[0].startswith("-") or args[0] in SUBCOMMANDS:
        return None
    if any(a.startswith("-") for a in args[1:]):
        return None  # flags: let the full `run` command parse them
    return config, args[0], args[1:]


def report(e: RunjobError) -> None:
    lines = e.lines() if isinstance(e, ConfigError) else [str(e)]
    sys.stderr.write("".join(f"runjob: {line}\n" for line in lines))
