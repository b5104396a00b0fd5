"""`runjob run NAME` and the crontab form `runjob NAME`: build the plan, pick sinks, run."""

from __future__ import annotations

import os
import sys

from runjob.errors import ConfigError, UsageError
from runjob.records.logs import JsonSink, Records, new_run_id
from runjob.registry import config, loader
from runjob.run import plan

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from runjob.records.logs import Sink
    from runjob.run.model import Observer

FORMATS = ("auto", "json", "pretty")


class Flags:
    """`runjob run`'s options beyond the job and its params: how to run (`overrides`, for the
    plan) and how to show it (`--dry-run`, `--format`, `--quiet`). The crontab form has none."""

    __slots__ = ("dry_run", "overrides", "fmt", "quiet")

    def __init__(
        self, dry_run: bool = False, overrides: plan.Overrides | None = None, fmt: str = "auto", quiet: bool = False
    ) -> None:
        self.dry_run = dry_run
        self.overrides = overrides or plan.Overrides()
        self.fmt = fmt
        self.quiet = quiet


def run_job(config_path: str | None, name: str, words: list[str], flags: Flags | None = None) -> int:
    """`runjob NAME k=v ...`: a job's run (or its dry run), or a pipeline's."""
    flags = flags or Flags()
    pretty = _pretty(flags.fmt)
    _check_utf8(words)
    registry = _load(config_path, name, flags.dry_run, pretty)
    if name in registry.pipelines:  # one namespace: `runjob NAME` runs a pipeline too
        return _pipeline(registry, name, words, flags)
    the_plan = plan.build(registry, name, plan.parse_params(words), flags.overrides)
    if flags.dry_run:
        from runjob.cli.dry_run import show_plan

        return show_plan(the_plan, pretty)
    from runjob.run.runner import execute

    sink = _sink(the_plan, pretty, flags.quiet)
    try:
        return execute(the_plan, sink, observers(registry, the_plan))
    finally:
        sink.close()


def _load(config_path: str | None, name: str, dry_run: bool, pretty: bool) -> config.Registry:
    """The registry; a config error is also a config.error record (off a terminal)."""
    try:
        return loader.load(config_path, cached=not dry_run)  # a dry run parses, and writes no cache
    except ConfigError as e:
        if not pretty:
            _config_error_record(name, e)
        raise


def _pipeline(registry: config.Registry, name: str, words: list[str], flags: Flags) -> int:
    from runjob.pipeline.execution import pipeline_params, run_pipeline

    if flags.overrides.any():
        raise UsageError(
            f"{name} is a pipeline: --timeout, --no-retry, --output and --log-file are for jobs "
            "(set them on its jobs, or `timeout` on the pipeline)"
        )
    if flags.dry_run:
        from runjob.cli.dry_run import show_stages

        return show_stages(registry, registry.pipelines[name], pipeline_params(registry, name, words))
    return run_pipeline(registry, name, words)


def observers(registry: config.Registry, the_plan: plan.Plan) -> list[Observer]:
    """The after-run steps, in order: history first (its failure must stop the run)."""
    from runjob.store.recorder import HistoryRecorder

    steps: list[Observer] = [HistoryRecorder(the_plan.state_dir, registry.history_keep)]
    if the_plan.job.ping_url:
        from runjob.ops.ping import Pinger

        steps.append(Pinger(the_plan.job.ping_url, registry.ping_timeout))
    if any(the_plan.job.owners.values()):
        from runjob.ops.notify import Notifier

        steps.append(Notifier(registry))
    if registry.metrics_file:
        from runjob.ops.metrics import Metrics

        steps.append(Metrics(registry.metrics_file, registry.state_dir))
    return steps


def _pretty(fmt: str) -> bool:
    if fmt not in FORMATS:
        raise UsageError(f'--format must be one of {", ".join(FORMATS)}, got "{fmt}"')
    return fmt == "pretty" or (fmt == "auto" and sys.stdout.isatty())


def _check_utf8(words: list[str]) -> None:
    """Params and RUNJOB_CORRELATION_ID go into records, the history and the child's env as
    text: bytes that are not UTF-8 (kept by Python as lone surrogates) are a usage error."""
    named = [("param", w) for w in words]
    named.append(("RUNJOB_CORRELATION_ID", os.environ.get("RUNJOB_CORRELATION_ID", "")))
    for what, text in named:
        try:
            text.encode()
        except UnicodeEncodeError:
            shown = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            raise UsageError(f'{what} "{shown}" is not valid UTF-8') from None


def _sink(the_plan: plan.Plan, pretty: bool, quiet: bool = False) -> Sink:
    """Records to the log file or stdout, each run's also kept in state_dir/runs (SPEC section 11);
    quiet on success holds stdout's back until the run's outcome is known."""
    keep = (os.path.join(the_plan.state_dir, "runs"), getattr(the_plan.job, "keep_runs", 50))
    to_json = bool(the_plan.log_file) or not pretty
    hold = (
        "" if the_plan.log_file else "on-success" if quiet or getattr(the_plan.job, "quiet", "") == "on-success" else ""
    )
    json_sink = JsonSink(the_plan.log_file, nonblocking=True, keep=keep, hold=hold if to_json else "always")
    if not pretty:
        return json_sink
    from runjob.cli.pretty import PrettySink
    from runjob.records.logs import TeeSink

    return TeeSink(json_sink, PrettySink())


def _config_error_record(name: str, e: ConfigError) -> None:
    """The config.error record, on stdout: the log aggregator must see why nothing ran."""
    fields: dict[str, Any] = {"errors": e.lines()}
    sink = JsonSink()
    try:
        Records(sink, name, new_run_id(), os.environ.get("RUNJOB_CORRELATION_ID")).emit(
            "config.error", f"{name}: not run, the registry has {len(e.errors)} error(s)", level="error", **fields
        )
    finally:
        sink.close()


def run_words(args: list[str]) -> int:
    """A run given as `[--config F] [run] NAME k=v ...` (a queued run, in a copy of its worker
    forked for it): what `runjob NAME k=v ...` does, with no command-line dispatch."""
    from runjob import startup

    startup.prepare()

    def run() -> int:
        config, rest = startup.config_option(args)
        rest = rest[1:] if rest[:1] == ["run"] else rest  # a job named like a subcommand
        return run_job(config, rest[0], rest[1:])

    return startup.contained(run)


def preload() -> None:
    """Import the run path once, in a queue worker: every run forked from it starts with it loaded (`resource`
    is what os.wait4 imports on first use)."""
    import resource  # noqa: F401

    import runjob.cli.run  # noqa: F401
    import runjob.records.kept_file  # noqa: F401  (each run keeps its records: imported on first write)
    import runjob.run.runner  # noqa: F401
    import runjob.store.recorder  # noqa: F401
