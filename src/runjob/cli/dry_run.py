"""`runjob run NAME --dry-run`: print the resolved plan; take no lock, run nothing."""

from __future__ import annotations

import os

from runjob.errors import EXIT_OK
from runjob.locks import lock
from runjob.proc import executable
from runjob.records.encoding import encode
from runjob.records.redact import Redactor
from runjob.run.plan import Plan
from runjob.run.runner import child_env

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from runjob.registry.config import Pipeline, Registry


def describe(plan: Plan) -> dict[str, Any]:
    job = plan.job
    env = child_env(plan, "(new per run)", os.environ.get("RUNJOB_CORRELATION_ID") or "(the run id)")
    env["RUNJOB_ATTEMPT"] = "1"
    path, problem, code = check_executable(plan, env)
    held = lock.is_held(plan.lock_file)
    shown: dict[str, Any] = {
        "dry_run": True,
        "job": plan.name,
        "params": plan.params,
        "argv": [plan.redact(a) for a in plan.argv],
        "cwd": plan.cwd,
        "env": plan.shown_env(dict(sorted(env.items()))),  # the child's whole environment
        "env_added": plan.shown_env(),  # what the job adds to the inherited environment
        "executable": path,
        "executable_problem": problem,
        "executable_exit_code": code,
        "lock_key": plan.lock_key,
        "lock_file": plan.lock_file,
        "lock_held": held,
        "lock_holder": lock.read_holder(plan.lock_file) if held else None,
        "on_busy": job.on_busy,
        "wait_s": job.wait,
        "timeout_s": plan.timeout,
        "kill_grace_s": plan.kill_grace,
        "retry": plan.retry,
        "transient": job.transient,
        "owners": job.owners,
        "output": plan.output,
        "log_file": plan.log_file or "stdout",
        "schedule": job.schedule,
        "state_dir": plan.state_dir,
    }
    redacted: dict[str, Any] = Redactor(plan.secret_values).value(shown)  # a secret param may reach any field
    return redacted


def check_executable(plan: Plan, env: dict[str, str]) -> tuple[str | None, str | None, int]:
    """(resolved path, problem, exit code) of argv[0]: the run's own check (executable.resolve)."""
    try:
        return executable.resolve(plan.argv[0], plan.cwd, env), None, EXIT_OK
    except executable.Problem as e:
        return e.path, str(e), e.exit_code


def show_plan(plan: Plan, pretty: bool) -> int:
    described = describe(plan)
    if pretty:
        from runjob.cli.pretty import show_plan as render

        render(described)
    else:
        print(encode(described))
    return int(described["executable_exit_code"])


STAGE_FIELDS = ("job", "params", "argv", "lock_key", "lock_held", "timeout_s", "executable", "executable_problem")


def show_stages(registry: Registry, pipeline: Pipeline, params: dict[str, str]) -> int:
    """`runjob PIPELINE --dry-run`: its stages, each job's resolved plan in short; runs nothing.
    The exit code is the first job's executable problem (126/127), else 0."""
    stages, code = [], EXIT_OK
    for stage in pipeline.stages:
        shown = []
        for name in stage:
            described = _stage_job(registry, name, params)
            code = code or int(described["executable_exit_code"])
            shown.append({k: described[k] for k in STAGE_FIELDS})
        stages.append(shown)
    head = {"dry_run": True, "pipeline": pipeline.name, "params": params, "lock_key": pipeline.lock_key}
    rest = {"timeout_s": pipeline.pipeline_timeout, "owners": pipeline.owners, "schedule": pipeline.schedule}
    print(encode(head | rest | {"stages": stages}))
    return code


def _stage_job(registry: Registry, name: str, params: dict[str, str]) -> dict[str, Any]:
    """One stage job's dry run, with the pipeline's params it declares."""
    from runjob.run import plan as plans

    words = plans.job_words(registry, name, params)
    return describe(plans.build(registry, name, plans.parse_params(words[1:])))
