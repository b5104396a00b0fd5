"""`runjob list`, `show`, `validate` and `schema`: look at the registry, change nothing."""

from __future__ import annotations

import sys
from datetime import datetime, timezone

from runjob import config, jsonout, schema
from runjob.errors import ConfigError, EXIT_CONFIG, EXIT_OK
from runjob.schedule import next_times

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

NEXT_TIMES = 3


def summary(job: config.Job, now: datetime) -> dict[str, Any]:
    return {
        "name": job.name,
        "description": job.description,
        "schedule": job.schedule,
        "next": [t.isoformat() for t in next_times(job, now, NEXT_TIMES)],
        "lock_key": job.lock_key,
        "timeout_s": job.timeout,
        "owners": job.owners,
        "params": sorted(job.params),
    }


def _now(at: float | None) -> datetime:
    """Now, or the `--at` instant the next due times are seen from."""
    return datetime.now(timezone.utc) if at is None else datetime.fromtimestamp(at, timezone.utc)


def list_jobs(config_path: str | None, as_json: bool, at: float | None = None) -> int:
    registry = config.load(config_path, check_schedules=True, cached=True)
    now = _now(at)
    rows = [summary(job, now) for job in registry.jobs.values()]
    if as_json:
        print(jsonout.dumps(rows))
    else:
        from runjob.pretty import job_table

        job_table(rows)
    return EXIT_OK


def show_job(config_path: str | None, name: str, as_json: bool, at: float | None = None) -> int:
    registry = config.load(config_path, check_schedules=True)
    job = registry.job(name)
    shown = job.as_dict() | {"next": [t.isoformat() for t in next_times(job, _now(at), 5)]}
    shown["owners_detail"] = {role: registry.owners.get(o) for role, o in job.owners.items() if o}
    _warn(config.state_dir_warnings(registry))
    if as_json:
        print(jsonout.dumps(shown))
    else:
        from runjob.pretty import job_detail

        job_detail(shown)
    return EXIT_OK


def validate(config_path: str | None, as_json: bool) -> int:
    try:
        registry = config.load(config_path, check_schedules=True)
    except ConfigError as e:
        if not as_json:
            raise
        print(jsonout.dumps({"valid": False, "path": e.path, "errors": e.lines()}))
        return EXIT_CONFIG
    warnings = registry.warnings + config.state_dir_warnings(registry)
    for warning in warnings:  # allowed, so exit 0, but said where people look
        sys.stderr.write(f"runjob: warning: {registry.path}: {warning}\n")
    result = {"valid": True, "path": registry.path, "jobs": len(registry.jobs)}
    result |= {"warnings": warnings} if warnings else {}
    if as_json:
        print(jsonout.dumps(result))
    else:
        from runjob.pretty import say

        say(f"[green]OK[/green] {registry.path}: {len(registry.jobs)} jobs, {len(registry.owners)} owners")
    return EXIT_OK


def print_schema() -> int:
    print(jsonout.dumps(schema.json_schema()))
    return EXIT_OK


def _warn(warnings: list[str]) -> None:
    for warning in warnings:
        sys.stderr.write(f"runjob: warning: {warning}\n")
