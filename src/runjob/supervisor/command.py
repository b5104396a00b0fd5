"""`runjob supervise NAME`: load the worker, set up records and state, run the loop."""

from __future__ import annotations

import os

from runjob.errors import UsageError
from runjob.records.logs import JsonSink, Records, new_run_id
from runjob.registry import config, loader

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def supervise(config_path: str | None, name: str, instances: int | None = None) -> int:
    from runjob.records.redact import job_secrets
    from runjob.supervisor.loop import Supervisor
    from runjob.supervisor.state import StateFile

    registry = loader.load(config_path)
    if name not in registry.workers:
        known = ", ".join(sorted(registry.workers)) or "none"
        raise UsageError(f'unknown worker "{name}" in {registry.path} (workers: {known})')
    worker = registry.workers[name] | ({"instances": instances} if instances else {})
    env = _environment(registry, worker)
    run_id = new_run_id()
    records = Records(
        JsonSink("", nonblocking=True),
        name,
        run_id,
        os.environ.get("RUNJOB_CORRELATION_ID"),
        job_secrets(env, worker["secrets"]),
    )
    state = StateFile(registry.state_dir, name)
    cwd = registry.resolve(worker["cwd"]) if worker["cwd"] else None

    def on_giveup(record: dict[str, Any]) -> None:
        from runjob.supervisor.owners import tell_owners

        tell_owners(registry, name, worker, record, records)

    return Supervisor(
        name, worker | {"cwd": cwd}, env | {"RUNJOB_RUN_ID": run_id, "RUNJOB_JOB": name}, records, state, on_giveup
    ).run()


def _environment(registry: config.Registry, worker: dict[str, Any]) -> dict[str, str]:
    """The inherited environment without other entries' secrets, plus the worker's env."""
    withheld = registry.secret_names() - set(worker["secrets"])
    env = {k: v for k, v in os.environ.items() if k not in withheld}
    extra: dict[str, str] = worker["env"]
    return env | extra
