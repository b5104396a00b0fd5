"""`[pipelines.NAME]` (SPEC 8): parsed and checked into config.Pipeline values.

Reported with their key paths, together with every other registry error (exit 78): a stage
naming an unknown job, another pipeline or the pipeline itself, a job in two stages, a name
that a job has too (one namespace), a param no job can take or a job left without a value
for a required param, a bad lock key, an undeclared owner.
"""

from __future__ import annotations

import re

from runjob.registry import budget, lock_keys, schema
from runjob.registry.config import Job, Pipeline, key

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def pipelines(
    raw: Any, jobs: dict[str, Job], defaults: dict[str, Any], owners: dict[str, Any], errors: list[str]
) -> dict[str, Pipeline]:
    from runjob.registry.tables import _table, named_tables

    out = {}
    for name, body, where, valid in named_tables(raw, "pipelines", "pipeline", errors):
        if valid and name in schema.SUBCOMMANDS:
            errors.append(f'{where}: "{name}" is a runjob subcommand and cannot name a pipeline')
        elif valid and name in jobs:
            errors.append(f'{where}: "{name}" names a job too; jobs and pipelines share one namespace')
        values = _table(body, schema.PIPELINE, where, errors)
        if "stages" not in values:
            continue
        _check_stages(name, where, values["stages"], jobs, set(raw), errors)
        _check_params(where, values, jobs, errors)
        _check_rest(where, values, owners, errors)
        out[name] = Pipeline(name, _values(name, values, jobs, defaults))
    return out


def _check_stages(
    name: str, where: str, staged: list[list[str]], jobs: dict[str, Job], pipeline_names: set[str], errors: list[str]
) -> None:
    seen: dict[str, int] = {}
    for i, stage in enumerate(staged):
        for j, job in enumerate(stage):
            at = f"{where}.stages[{i}][{j}]"
            if job == name:
                errors.append(f'{at}: the pipeline names itself ("{job}")')
            elif job in pipeline_names:
                errors.append(f'{at}: "{job}" is a pipeline; stages name jobs')
            elif job not in jobs:
                errors.append(f'{at}: unknown job "{job}" (not in [jobs])')
            elif job in seen:
                errors.append(
                    f'{at}: job "{job}" is in stage {seen[job] + 1} already; a job runs once per pipeline run'
                )
            else:
                seen[job] = i


def _staged_jobs(values: dict[str, Any], jobs: dict[str, Job]) -> list[Job]:
    return [jobs[n] for stage in values["stages"] for n in dict.fromkeys(stage) if n in jobs]


def _check_params(where: str, values: dict[str, Any], jobs: dict[str, Job], errors: list[str]) -> None:
    """Every given param fits some job and its pattern; every job gets its required params."""
    given = values.get("params", {})
    staged = _staged_jobs(values, jobs)
    for param, value in given.items():
        takers = [job for job in staged if param in job.params]
        if not takers:
            errors.append(f"{where}.params.{key(param)}: no job of the pipeline declares this param")
        for job in takers:
            pattern = job.params[param]["pattern"]
            if isinstance(pattern, str) and not re.fullmatch(pattern, value):
                errors.append(
                    f'{where}.params.{key(param)}: "{value}" does not match the pattern {pattern} of job {job.name}'
                )
    for job in staged:
        for param, spec in job.params.items():
            if spec["default"] is None and param not in given:
                errors.append(
                    f'{where}.params: job "{job.name}" needs param "{param}" (it has no default); give it here'
                )


def _check_rest(where: str, values: dict[str, Any], owners: dict[str, Any], errors: list[str]) -> None:
    if values.get("lock_key") is not None:
        problem = lock_keys.problem(values["lock_key"])
        if problem:
            errors.append(f"{where}.lock_key: {problem}")
    for role, owner in values.get("owners", {}).items():
        if owner is not None and owner not in owners:
            errors.append(f'{where}.owners.{role}: owner "{owner}" is not declared in [owners]')


def _values(name: str, values: dict[str, Any], jobs: dict[str, Job], defaults: dict[str, Any]) -> dict[str, Any]:
    """The Job-shaped values schedules and exports read, plus what the pipeline runs."""
    staged = _staged_jobs(values, jobs)
    # Its longest run for an outer scheduler (systemd TimeoutStartSec=, activeDeadlineSeconds):
    # its own timeout, or its stages one after the other, each as long as its longest job.
    longest = sum(
        max((budget.run_budget(jobs[n]) for n in stage if n in jobs), default=0.0) for stage in values["stages"]
    )
    out = {k: spec.default for k, spec in schema.JOB.items() if spec.kind != "table"}
    out |= {
        k: {n: s.default for n, s in (spec.table or {}).items()}
        for k, spec in schema.JOB.items()
        if spec.kind == "table"
    }
    out |= {
        "description": values.get("description", ""),
        "command": ["runjob", name],
        "schedule": values.get("schedule"),
        "timezone": values.get("timezone", defaults.get("timezone")),
        "enabled": values.get("enabled", True),
        "catch_up": values.get("catch_up", defaults.get("catch_up")),
        "lock_key": values.get("lock_key") or name,
        "timeout": values.get("timeout") or longest,
        "kill_grace": max((job.kill_grace for job in staged), default=10.0),
        "owners": {"responsible": None, "accountable": None} | values.get("owners", {}),
        "secrets": sorted({s for job in staged for s in job.secrets}),
        "stages": values["stages"],
        "pass_params": values.get("params", {}),
        "pipeline_timeout": values.get("timeout"),
    }
    return out
