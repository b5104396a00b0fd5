"""The typer app: option parsing only; the work lives in runjob.commands."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from runjob import __version__

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Run registered jobs with a run id, an overlap lock, a timeout, retries and JSON logs.\n\n"
    "The crontab form `runjob NAME [key=value ...]` is `runjob run NAME [key=value ...]`.",
)
state: dict[str, Optional[str]] = {"config": None}

ConfigOpt = Annotated[Optional[str], typer.Option("--config", "-c", help="registry file (default: search path)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON instead of a table (always, off a terminal)")]
AtOpt = Annotated[
    Optional[str], typer.Option("--at", help="as seen at this time (RFC 3339 with Z or an offset)")
]


def _version(value: bool) -> None:
    if value:
        print(f"runjob {__version__}")
        raise typer.Exit(0)


@app.callback()
def root(
    config: ConfigOpt = None,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True)] = False,
) -> None:
    state["config"] = config


def _json(flag: bool) -> bool:
    return flag or not sys.stdout.isatty()


def _done(code: int) -> None:
    raise typer.Exit(code)


@app.command(context_settings={"ignore_unknown_options": False})
def run(
    name: Annotated[str, typer.Argument(help="job name")],
    params: Annotated[Optional[list[str]], typer.Argument(help="key=value params")] = None,
    param: Annotated[Optional[list[str]], typer.Option("--param", "-p", help="key=value (repeatable)")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the plan; lock and run nothing")] = False,
    timeout: Annotated[Optional[str], typer.Option(help="override the timeout, e.g. 90s")] = None,
    no_retry: Annotated[bool, typer.Option("--no-retry", help="one attempt only")] = False,
    output: Annotated[Optional[str], typer.Option(help="json | passthrough | discard")] = None,
    log_file: Annotated[Optional[str], typer.Option("--log-file", help='records to this file ("" = stdout)')] = None,
    fmt: Annotated[str, typer.Option("--format", help="auto | json | pretty")] = "auto",
) -> None:
    """Run one job (the crontab form `runjob NAME` does the same)."""
    from runjob.commands.run import run_job

    _done(run_job(state["config"], name, params or [], param or [], dry_run, timeout, no_retry, output, log_file, fmt))


@app.command("list")
def list_(as_json: JsonOpt = False, at: AtOpt = None) -> None:
    """Jobs with schedule, next run, lock key, timeout and owners."""
    from runjob.commands.inspect import list_jobs
    from runjob.cron import parse_at

    _done(list_jobs(state["config"], _json(as_json), parse_at(at)))


@app.command()
def show(name: str, as_json: JsonOpt = False, at: AtOpt = None) -> None:
    """One job, fully resolved ([defaults] merged in)."""
    from runjob.commands.inspect import show_job
    from runjob.cron import parse_at

    _done(show_job(state["config"], name, _json(as_json), parse_at(at)))


@app.command()
def validate(as_json: JsonOpt = False) -> None:
    """Check the registry: exit 0, or 78 with every error and its key path."""
    from runjob.commands.inspect import validate as check

    _done(check(state["config"], as_json))


@app.command()
def history(
    name: Annotated[Optional[str], typer.Argument(help="only this job")] = None,
    limit: Annotated[int, typer.Option(help="at most this many runs, newest first")] = 50,
    status: Annotated[Optional[str], typer.Option(help="only runs with this status (crashed: died mid-run)")] = None,
    since: Annotated[Optional[str], typer.Option(help="only runs started within this duration, e.g. 1d")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Past runs from the history store."""
    from runjob.commands.history import show_history

    _done(show_history(state["config"], name, limit, status, since, _json(as_json)))


@app.command()
def status(as_json: JsonOpt = False, at: AtOpt = None) -> None:
    """Per job: last run, status, duration, last success, next due time, stale flag, locks held."""
    from runjob.commands.history import show_status
    from runjob.cron import parse_at

    _done(show_status(state["config"], _json(as_json), parse_at(at)))


@app.command()
def stale(
    notify: Annotated[bool, typer.Option("--notify", help="tell the owners of each stale job")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Watchdog: jobs with no success within max_age, as job.stale records; exit 1 if any."""
    from runjob.commands.history import check_stale

    _done(check_stale(state["config"], notify, not _json(as_json)))


@app.command()
def locks(as_json: JsonOpt = False) -> None:
    """Locks held now, with holder pid, run id and since when."""
    from runjob.commands.history import show_locks

    _done(show_locks(state["config"], _json(as_json)))


@app.command()
def export(
    fmt: Annotated[str, typer.Argument(metavar="crontab|systemd|kubernetes")],
    out: Annotated[Optional[str], typer.Option("--out", help="write files into this directory")] = None,
    image: Annotated[str, typer.Option(help="kubernetes: the container image")] = "runjob:latest",
    namespace: Annotated[Optional[str], typer.Option(help="kubernetes: the namespace")] = None,
) -> None:
    """The schedules as code: a crontab, systemd units, or Kubernetes CronJobs."""
    from runjob.commands.export import export as run_export

    _done(run_export(state["config"], fmt, out, image, namespace))


@app.command()
def tick(
    at: Annotated[
        Optional[str],
        typer.Option(help="evaluate the schedules at this time (RFC 3339 with Z or an offset); records no tick"),
    ] = None,
) -> None:
    """Start every job due this minute, each as its own detached `runjob NAME` (for `* * * * * runjob tick`)."""
    from runjob.commands.tick import tick as run_tick
    from runjob.cron import parse_at

    _done(run_tick(state["config"], parse_at(at)))


@app.command()
def init(force: Annotated[bool, typer.Option("--force", help="overwrite an existing file")] = False) -> None:
    """Write a commented starter jobs.toml."""
    from runjob.commands.edit import init as run_init

    _done(run_init(state["config"], force))


@app.command()
def add(
    name: Annotated[str, typer.Argument(help="job name")],
    command: Annotated[str, typer.Option(help="the command, split like a shell would (no shell runs it)")],
    schedule: Annotated[Optional[str], typer.Option(help="cron expression")] = None,
    timeout: Annotated[Optional[str], typer.Option(help="e.g. 15m")] = None,
    lock_key: Annotated[Optional[str], typer.Option("--lock-key", help="default: the job name")] = None,
    description: Annotated[Optional[str], typer.Option(help="what the job does")] = None,
) -> None:
    """Append a job to jobs.toml (validated first; the file is replaced atomically)."""
    from runjob.commands.edit import add as run_add

    _done(run_add(state["config"], name, command, schedule, timeout, lock_key, description))


@app.command()
def schema() -> None:
    """Print the JSON Schema of jobs.toml."""
    from runjob.commands.inspect import print_schema

    _done(print_schema())


@app.command()
def supervise(
    name: Annotated[str, typer.Argument(help="worker name ([workers.NAME])")],
    instances: Annotated[Optional[int], typer.Option(min=1, help="run this many instead of `instances`")] = None,
) -> None:
    """Keep a long-running worker's instances up, in the foreground (SIGTERM/SIGINT: stop them all, exit 0)."""
    from runjob.supervisor.command import supervise as run_supervise

    _done(run_supervise(state["config"], name, instances))


def run_cli(args: list[str]) -> int:
    """Run the app; its usage errors exit 2, our RunjobErrors propagate to main()."""
    try:
        typer.main.get_command(app).main(args=args, prog_name="runjob", standalone_mode=True)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0
