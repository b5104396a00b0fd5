"""`runjob list`, `show`, `validate` and `schema`: look at the registry, change nothing.

`list` is an everyday command (answered without typer off a terminal): its next due
times come through schedule/due_times.py, and datetime, cronsim and the redactor are
loaded only by the commands that need them.
"""

from __future__ import annotations

import sys

from runjob.cli import answer
from runjob.errors import EXIT_CONFIG, EXIT_OK, ConfigError
from runjob.records import jsonout
from runjob.records.encoding import timestamp
from runjob.registry import config, loader, schema
from runjob.schedule.scheduled import schedule_state

TYPE_CHECKING = False
if TYPE_CHECKING:
    from datetime import datetime
    from typing import Any

    from runjob.schedule.due_times import DueTimes

NEXT_TIMES = 3


def summary(job: config.Job, now: float, due: DueTimes, state_dir: str | None = None) -> dict[str, Any]:
    out = {
        "name": job.name,
        "description": job.description,
        "schedule": job.schedule,
        "next": [timestamp(t) for t in due.next(job, now, NEXT_TIMES)],
        "lock_key": job.lock_key,
        "timeout_s": job.timeout,
        "owners": job.owners,
        "params": sorted(job.params),
    }
    return out | schedule_state(job, state_dir)


def _now(at: float | None) -> datetime:
    """Now, or the `--at` instant the next due times are seen from."""
    from datetime import UTC, datetime

    return datetime.now(UTC) if at is None else datetime.fromtimestamp(at, UTC)


def list_jobs(config_path: str | None, as_json: bool, at: float | None = None) -> int:
    import time

    from runjob.schedule.due_times import DueTimes

    registry = loader.load(config_path, check_schedules=True, cached=True)
    due = DueTimes(registry.state_dir, keep=at is None)  # --at: seen from then, not kept
    now = time.time() if at is None else at
    everything = [*registry.jobs.values(), *registry.pipelines.values()]
    rows = [summary(job, now, due, registry.state_dir) for job in everything]
    due.save()
    return answer.show(rows, as_json, "job_table")


def show_job(config_path: str | None, name: str, as_json: bool, at: float | None = None) -> int:
    from runjob.records.redact import MASK, Redactor, job_secrets
    from runjob.schedule.scheduled import next_times

    registry = loader.load(config_path, check_schedules=True)
    job = registry.pipelines[name] if name in registry.pipelines else registry.job(name)
    shown = job.as_dict() | {
        "next": [timestamp(t.timestamp()) for t in next_times(job, _now(at), 5, registry.state_dir)]
    }
    shown["owners_detail"] = {role: registry.owners.get(o) for role, o in job.owners.items() if o}
    shown = Redactor(job_secrets(job.env, job.secrets)).value(shown)  # a secret's value, wherever it is
    shown["env"] = {k: MASK if k in job.secrets else v for k, v in shown["env"].items()}
    _warn(config.state_dir_warnings(registry))
    return answer.show(shown, as_json, "job_detail")


def validate(config_path: str | None, as_json: bool) -> int:
    try:
        registry = loader.load(config_path, check_schedules=True)
    except ConfigError as e:
        if not as_json:
            raise
        print(jsonout.dumps({"valid": False, "path": e.path, "errors": e.lines()}))
        return EXIT_CONFIG
    warnings = registry.warnings + config.state_dir_warnings(registry)
    for warning in warnings:  # allowed, so exit 0, but said where people look
        sys.stderr.write(f"runjob: warning: {registry.path}: {warning}\n")
    result = {"valid": True, "path": registry.path, "jobs": len(registry.jobs)}
    result |= {"pipelines": len(registry.pipelines)} if registry.pipelines else {}
    result |= {"warnings": warnings} if warnings else {}
    if as_json:
        print(jsonout.dumps(result))
    else:
        from runjob.cli.pretty import say

        counts = [
            (len(registry.jobs), "job"),
            (len(registry.pipelines), "pipeline"),
            (len(registry.workers), "worker"),
            (len(registry.owners), "owner"),
        ]
        said = ", ".join(f"{n} {word}{'' if n == 1 else 's'}" for n, word in counts if n or word in ("job", "owner"))
        say(f"[green]OK[/green] {registry.path}: {said}")
    return EXIT_OK


def print_schema() -> int:
    print(jsonout.dumps(schema.json_schema()))
    return EXIT_OK


def _warn(warnings: list[str]) -> None:
    for warning in warnings:
        sys.stderr.write(f"runjob: warning: {warning}\n")
