"""`runjob run NAME --dry-run`: print the resolved plan; take no lock, run nothing."""

from __future__ import annotations

import os
import shutil

from runjob import lock
from runjob.errors import EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, EXIT_OK
from runjob.logs import encode
from runjob.plan import Plan
from runjob.redact import Redactor

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def describe(plan: Plan) -> dict[str, Any]:
    job = plan.job
    executable, problem = check_executable(plan)
    held = lock.is_held(plan.lock_file)
    shown: dict[str, Any] = {
        "dry_run": True,
        "job": plan.name,
        "params": plan.params,
        "argv": [plan.redact(a) for a in plan.argv],
        "cwd": plan.cwd,
        "env": plan.shown_env(),
        "executable": executable,
        "executable_problem": problem,
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
    return Redactor(plan.secret_values).value(shown)  # a secret param may reach any field


def check_executable(plan: Plan) -> tuple[str | None, str | None]:
    """(resolved path, problem) of argv[0], found as exec would find it."""
    program = plan.argv[0]
    if "/" in program:
        path: str | None = os.path.join(plan.cwd, program)
    else:
        search = plan.env.get("PATH", os.environ.get("PATH", os.defpath))
        path = shutil.which(program, mode=os.F_OK, path=search)
    if path is None or not os.path.exists(path):
        return path, f"command not found: {program}"
    if os.path.isdir(path) or not os.access(path, os.X_OK):
        return path, f"command not executable: {path}"
    return path, None


def show_plan(plan: Plan, pretty: bool) -> int:
    described = describe(plan)
    if pretty:
        from runjob.pretty import show_plan as render

        render(described)
    else:
        print(encode(described))
    problem = described["executable_problem"]
    if problem is None:
        return EXIT_OK
    return EXIT_NOT_FOUND if problem.startswith("command not found") else EXIT_NOT_EXECUTABLE
