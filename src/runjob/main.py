"""The `runjob` entry point.

`runjob NAME [k=v ...]` (the crontab form, run every minute on busy hosts) is dispatched
here without loading typer or rich, and so are `--version` and, off a terminal, `list`,
`status`, `history` and `tick` (cli/fastpath.py); everything else goes to the typer app in cli/app.py.
Every RunjobError becomes one line on stderr and its exit code (startup.py); anything else is a bug.
"""

from __future__ import annotations

import sys

from runjob import startup
from runjob.registry.schema import SUBCOMMANDS


def main(argv: list[str] | None = None, fast: bool = True) -> int:
    """runjob with `argv` (default: sys.argv[1:]); `fast=False` sends every command to typer."""
    startup.prepare()
    args = sys.argv[1:] if argv is None else argv
    return startup.contained(lambda: _dispatch(args, fast))


def _queue_command(args: list[str]) -> int | None:
    """`runjob enqueue` (scripted in loops) and `runjob worker` (every run of it is a fork of it)
    skip typer too; None when the words are not theirs to parse."""
    if "enqueue" in args[:3]:
        from runjob.queue.fastcli import enqueue_args

        return enqueue_args(args)
    if "worker" in args[:3]:
        from runjob.queue.fastcli import worker_args

        return worker_args(args)
    return None


def _dispatch(args: list[str], fast: bool) -> int:
    """The crontab form, enqueue and worker without typer; off a terminal, the fast path; else typer."""
    code = _queue_command(args) if fast else None
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


def crontab_form(args: list[str]) -> tuple[tuple[str | None, str, list[str]] | None, list[str]]:
    """((config, job, params), args) for `[--config F] NAME [k=v ...]`; else (None, args for typer).

    A job name followed by flags (`runjob NAME k=v --format json`) becomes `run NAME ...`.
    """
    config, rest = startup.config_option(args)
    if not rest or rest[0].startswith("-") or rest[0] in SUBCOMMANDS:
        return None, args
    if any(a.startswith("-") for a in rest[1:]):
        return None, args[: len(args) - len(rest)] + ["run"] + rest
    return (config, rest[0], rest[1:]), args
