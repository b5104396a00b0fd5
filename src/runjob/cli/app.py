"""The typer app: option parsing only; the work lives in the other modules of runjob.cli."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
import typer.core

from runjob import __version__
from runjob.cli.helptext import epilog

# typer escapes "[required]" to "\[required]" for rich whenever rich is installed, even
# though this app prints plain click help (rich_markup_mode=None): tell it not to.
typer.core.HAS_RICH = False

app = typer.Typer(
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Run registered jobs with a run id, an overlap lock, a timeout, retries and JSON logs.\n\n"
    "The crontab form `runjob NAME [key=value ...]` is `runjob run NAME [key=value ...]`.",
    epilog=epilog("root"),
)
state: dict[str, str | None] = {"config": None}

ConfigOpt = Annotated[str | None, typer.Option("--config", "-c", help="registry file (default: search path)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON instead of a table (always, off a terminal)")]
AtOpt = Annotated[str | None, typer.Option("--at", help="as seen at this time (RFC 3339 with Z or an offset)")]


def _job_names(ctx: typer.Context, incomplete: str) -> list[str]:
    """Shell completion of a job name: the registry's jobs (none if it cannot be read)."""
    from runjob.errors import RunjobError
    from runjob.registry import loader

    try:
        registry = loader.load(ctx.find_root().params.get("config"))
    except RunjobError:
        return []
    return [name for name in registry.jobs if name.startswith(incomplete)]


JobName = Annotated[str, typer.Argument(help="job name", autocompletion=_job_names)]


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


@app.command(context_settings={"ignore_unknown_options": False}, epilog=epilog("run"))
def run(
    name: JobName,
    params: Annotated[list[str] | None, typer.Argument(help="key=value params")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="key=value (repeatable)")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the plan; lock and run nothing")] = False,
    timeout: Annotated[str | None, typer.Option(help="override the timeout, e.g. 90s")] = None,
    no_retry: Annotated[bool, typer.Option("--no-retry", help="one attempt only")] = False,
    output: Annotated[str | None, typer.Option(help="json | passthrough | discard")] = None,
    log_file: Annotated[str | None, typer.Option("--log-file", help='records to this file ("" = stdout)')] = None,
    fmt: Annotated[str, typer.Option("--format", help="auto | json | pretty")] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", help="stdout: nothing if the run succeeds, all if not")] = False,
) -> None:
    """Run one job (the crontab form `runjob NAME` does the same)."""
    from runjob.cli.run import Flags, run_job
    from runjob.registry.durations import flag
    from runjob.run.plan import Overrides

    overrides = Overrides(flag(timeout, "--timeout"), no_retry, output, log_file)
    _done(run_job(state["config"], name, [*(params or []), *(param or [])], Flags(dry_run, overrides, fmt, quiet)))


@app.command("list", epilog=epilog("list"))
def list_(as_json: JsonOpt = False, at: AtOpt = None) -> None:
    """Jobs with schedule, next run, lock key, timeout and owners."""
    from runjob.cli.inspect import list_jobs
    from runjob.schedule.cron import parse_at

    _done(list_jobs(state["config"], _json(as_json), parse_at(at)))


@app.command(epilog=epilog("show"))
def show(name: JobName, as_json: JsonOpt = False, at: AtOpt = None) -> None:
    """One job, fully resolved ([defaults] merged in)."""
    from runjob.cli.inspect import show_job
    from runjob.schedule.cron import parse_at

    _done(show_job(state["config"], name, _json(as_json), parse_at(at)))


@app.command(epilog=epilog("validate"))
def validate(as_json: JsonOpt = False) -> None:
    """Check the registry: exit 0, or 78 with every error and its key path."""
    from runjob.cli.inspect import validate as check

    _done(check(state["config"], as_json))


@app.command(epilog=epilog("history"))
def history(
    name: Annotated[str | None, typer.Argument(help="only this job")] = None,
    limit: Annotated[int, typer.Option(help="at most this many runs, newest first")] = 50,
    status: Annotated[str | None, typer.Option(help="only runs with this status (crashed: died mid-run)")] = None,
    since: Annotated[str | None, typer.Option(help="only runs started within this duration, e.g. 1d")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Past runs from the history store."""
    from runjob.cli.history import show_history

    _done(show_history(state["config"], name, limit, status, since, _json(as_json)))


@app.command(epilog=epilog("status"))
def status(as_json: JsonOpt = False, at: AtOpt = None) -> None:
    """Per job: last run, status, duration, last success, next due time, stale flag, locks held."""
    from runjob.cli.history import show_status
    from runjob.schedule.cron import parse_at

    _done(show_status(state["config"], _json(as_json), parse_at(at)))


@app.command(epilog=epilog("stale"))
def stale(
    notify: Annotated[bool, typer.Option("--notify", help="tell the owners of each stale job")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Watchdog: jobs with no success within max_age, as job.stale records; exit 1 if any."""
    from runjob.cli.history import check_stale

    _done(check_stale(state["config"], notify, not _json(as_json)))


@app.command(epilog=epilog("locks"))
def locks(as_json: JsonOpt = False) -> None:
    """Locks held now, with holder pid, run id and since when."""
    from runjob.cli.history import show_locks

    _done(show_locks(state["config"], _json(as_json)))


@app.command(epilog=epilog("export"))
def export(
    fmt: Annotated[str, typer.Argument(metavar="crontab|systemd|kubernetes")],
    out: Annotated[str | None, typer.Option("--out", help="write files into this directory")] = None,
    image: Annotated[str, typer.Option(help="kubernetes: the container image")] = "runjob:latest",
    namespace: Annotated[str | None, typer.Option(help="kubernetes: the namespace")] = None,
) -> None:
    """The schedules as code: a crontab, systemd units, or Kubernetes CronJobs."""
    from runjob.cli.export import export as run_export

    _done(run_export(state["config"], fmt, out, image, namespace))


@app.command("import", epilog=epilog("import"))
def import_(
    kind: Annotated[str, typer.Argument(metavar="crontab")],
    file: Annotated[str, typer.Argument(help="the crontab to convert (`crontab -l > FILE`)")],
) -> None:
    """Turn a crontab into jobs.toml entries (TOML on stdout; what could not be converted on stderr, exit 1)."""
    from runjob.cli.import_crontab import import_crontab

    _done(import_crontab(kind, file))


@app.command(epilog=epilog("tick"))
def tick(
    at: Annotated[
        str | None,
        typer.Option(help="evaluate the schedules at this time (RFC 3339 with Z or an offset); records no tick"),
    ] = None,
) -> None:
    """Start every job due this minute, each as its own detached `runjob NAME` (for `* * * * * runjob tick`)."""
    from runjob.cli.tick import tick as run_tick
    from runjob.schedule.cron import parse_at

    _done(run_tick(state["config"], parse_at(at)))


@app.command(epilog=epilog("resume"))
def resume(pipeline_run_id: str) -> None:
    """Run a pipeline run again from where it stopped (never a job that already succeeded in it)."""
    from runjob.pipeline.execution import resume as run_resume

    _done(run_resume(state["config"], pipeline_run_id))


@app.command(epilog=epilog("init"))
def init(force: Annotated[bool, typer.Option("--force", help="overwrite an existing file")] = False) -> None:
    """Write a commented starter jobs.toml."""
    from runjob.cli.edit import init as run_init

    _done(run_init(state["config"], force))


@app.command(epilog=epilog("add"))
def add(
    name: Annotated[str, typer.Argument(help="job name")],
    command: Annotated[str, typer.Option(help="the command, split like a shell would (no shell runs it)")],
    schedule: Annotated[str | None, typer.Option(help="cron expression")] = None,
    timeout: Annotated[str | None, typer.Option(help="e.g. 15m")] = None,
    lock_key: Annotated[str | None, typer.Option("--lock-key", help="default: the job name")] = None,
    description: Annotated[str | None, typer.Option(help="what the job does")] = None,
) -> None:
    """Append a job to jobs.toml (validated first; the file is replaced atomically)."""
    from runjob.cli.edit import add as run_add

    _done(run_add(state["config"], name, command, schedule, timeout, lock_key, description))


@app.command(epilog=epilog("schema"))
def schema() -> None:
    """Print the JSON Schema of jobs.toml."""
    from runjob.cli.inspect import print_schema

    _done(print_schema())


@app.command(epilog=epilog("logs"))
def logs(
    run_id: Annotated[str, typer.Argument(help="a run id, or a unique prefix of 8+ characters")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing until the run has ended")] = False,
) -> None:
    """A kept run's records, as the JSON lines they were written as."""
    from runjob.views.kept import show as show_kept

    _done(show_kept(state["config"], run_id, follow))


@app.command(epilog=epilog("report"))
def report(
    html: Annotated[str, typer.Option("--html", help="write the report to this file")],
    since: Annotated[
        str, typer.Option(help='runs started within this duration, e.g. 7d ("all": every kept row)')
    ] = "1d",
    job: Annotated[str | None, typer.Option("--job", help="only this job")] = None,
) -> None:
    """A self-contained HTML timeline of the runs, with per-job statistics."""
    from runjob.views.report import write_report

    _done(write_report(state["config"], html, since, job))


@app.command(epilog=epilog("serve"))
def serve(
    bind: Annotated[
        str, typer.Option(help="HOST:PORT to listen on (localhost unless told otherwise)")
    ] = "127.0.0.1:8080",
) -> None:
    """The report, live, and /api/runs as JSON: read-only, on localhost by default."""
    from runjob.views.serve import serve as run_serve

    _done(run_serve(state["config"], bind))


@app.command(epilog=epilog("enqueue"), context_settings={"ignore_unknown_options": False})
def enqueue(
    name: Annotated[str, typer.Argument(help="job name")],
    params: Annotated[list[str] | None, typer.Argument(help="key=value params")] = None,
    priority: Annotated[int, typer.Option(help="higher runs first (-1000..1000)")] = 0,
    delay: Annotated[str | None, typer.Option(help="not before this long from now, e.g. 10m")] = None,
    at: Annotated[str | None, typer.Option(help="not before this time (RFC 3339 with Z or an offset)")] = None,
) -> None:
    """Put a run of a job on the queue (params are checked now); prints a queue.enqueued record."""
    from runjob.queue.enqueue import enqueue as run_enqueue
    from runjob.schedule.cron import parse_at

    _done(run_enqueue(state["config"], name, params or [], priority, delay, parse_at(at)))


@app.command(epilog=epilog("worker"))
def worker(
    concurrency: Annotated[int, typer.Option(help="runs at once")] = 1,
    burst: Annotated[bool, typer.Option("--burst", help="exit when nothing is due")] = False,
    max_jobs: Annotated[int | None, typer.Option("--max-jobs", help="exit after taking this many")] = None,
    max_time: Annotated[str | None, typer.Option("--max-time", help="take nothing new after this long")] = None,
) -> None:
    """Take queued runs and run each as a normal run; SIGTERM: finish the runs in hand, exit 0."""
    from runjob.queue.worker import work

    _done(work(state["config"], concurrency, burst, max_jobs, max_time))


queue_app = typer.Typer(
    help="The queue: entries and health; retry, drop, priority, pause, resume.", epilog=epilog("queue")
)
app.add_typer(queue_app, name="queue")


@queue_app.callback(invoke_without_command=True)
def queue_show(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Pending, running and dead entries, and the queue's health."""
    if ctx.invoked_subcommand is None:
        from runjob.queue.admin import show

        _done(show(state["config"], _json(as_json)))


@queue_app.command("retry")
def queue_retry(entry_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Put a dead entry back as pending, under the same ID."""
    from runjob.queue.admin import act

    _done(act(state["config"], "retry", entry_id))


@queue_app.command("drop")
def queue_drop(entry_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Remove a pending or dead entry."""
    from runjob.queue.admin import act

    _done(act(state["config"], "drop", entry_id))


@queue_app.command("priority")
def queue_priority(
    entry_id: Annotated[str, typer.Argument(metavar="ID")], value: Annotated[int, typer.Argument(metavar="N")]
) -> None:
    """Give an entry a new priority."""
    from runjob.queue.admin import act

    _done(act(state["config"], "priority", entry_id, value))


@queue_app.command("pause")
def queue_pause(job: Annotated[str | None, typer.Argument(metavar="[JOB]")] = None) -> None:
    """Stop taking entries (of one job, or all)."""
    from runjob.queue.admin import act

    _done(act(state["config"], "pause", job))


@queue_app.command("resume")
def queue_resume(job: Annotated[str | None, typer.Argument(metavar="[JOB]")] = None) -> None:
    """Take entries again (of one job, or all)."""
    from runjob.queue.admin import act

    _done(act(state["config"], "resume", job))


@app.command(epilog=epilog("supervise"))
def supervise(
    name: Annotated[str, typer.Argument(help="worker name ([workers.NAME])")],
    instances: Annotated[int | None, typer.Option(min=1, help="run this many instead of `instances`")] = None,
) -> None:
    """Keep a long-running worker's instances up, in the foreground (SIGTERM/SIGINT: stop them all, exit 0)."""
    from runjob.supervisor.command import supervise as run_supervise

    _done(run_supervise(state["config"], name, instances))


def run_cli(args: list[str]) -> int:
    """Run the app; its usage errors exit 2, our RunjobErrors propagate to main()."""
    from runjob.cli.completion import FLAGS, completion

    if args[:1] and args[0] in FLAGS:
        return completion(args)
    try:
        typer.main.get_command(app).main(args=args, prog_name="runjob", standalone_mode=True)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0
