"""The registry's data model (`Registry`, `Job`).

Finding and loading the file live in loader.py, parsing and checking it in validate.py
(which builds these objects); this module stays small and free of
regexes because `runjob NAME` imports it on every run and, with the registry cache,
needs nothing else.
"""

from __future__ import annotations

import os

from runjob.registry import schema

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_BARE_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"


class Job:
    """One registry entry, [defaults] merged in, values converted (durations in seconds)."""

    name: str
    description: str
    command: list[str]
    shell: bool
    schedule: str | None
    enabled: bool
    timezone: str | None
    catch_up: float | None
    lock_key: str
    timeout: float
    kill_grace: float
    cwd: str | None
    env: dict[str, str]
    secrets: list[str]
    owners: dict[str, str | None]
    idempotency: str
    max_age: float | None
    expected_duration: dict[str, float | None]
    ping_url: str
    retry: dict[str, Any]
    transient: dict[str, list[Any]]
    params: dict[str, dict[str, Any]]
    instances: list[dict[str, str]]
    log_file: str
    output: str
    on_busy: str
    wait: float
    lock_backend: str
    lock_password_env: str | None
    lock_ttl: float | None
    on_lock_lost: str
    lock_unavailable: str
    keep_runs: int
    quiet: str
    dispatch: str

    def __init__(self, name: str, values: dict[str, Any]) -> None:
        self.name = name
        self.values = values  # as validated: what the registry cache stores
        self.__dict__.update(values)  # one call, not a setattr per key: tick builds 10,000 of these
        if self.lock_key is None:
            self.lock_key = name

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name} | {k: getattr(self, k) for k in schema.JOB}


class Pipeline(Job):
    """A `[pipelines.NAME]` entry. It is a Job for what schedules and exports read (schedule,
    owners, lock key, a `timeout` that covers its longest run); what it runs is `stages`, with
    `pass_params` given to each job that declares them and `pipeline_timeout` (or None) for it all."""

    stages: list[list[str]]
    pass_params: dict[str, str]
    pipeline_timeout: float | None

    def as_dict(self) -> dict[str, Any]:
        keys = ("description", "schedule", "timezone", "enabled", "lock_key", "owners", "stages")
        return (
            {"name": self.name, "pipeline": True}
            | {k: getattr(self, k) for k in keys}
            | {"params": self.pass_params, "timeout": self.pipeline_timeout}
        )


class Registry:
    """The whole file: settings from [defaults], owners, and jobs by name."""

    def __init__(
        self,
        path: str,
        defaults: dict[str, Any],
        owners: dict[str, Any],
        jobs: dict[str, Job],
        pipelines: dict[str, Pipeline] | None = None,
    ) -> None:
        self.path = path
        self.defaults = defaults  # as validated: what the registry cache stores
        self.owners = owners
        self.jobs = jobs
        self.pipelines = pipelines or {}  # one namespace with the jobs (validate checks)
        self.workers: dict[str, Any] = {}  # [workers.NAME] as validated (set by validate and the cache)
        self.base_dir = os.path.dirname(os.path.abspath(path))  # relative paths in the file start here
        self.state_dir = state_dir_for(self, path)
        self.metrics_file = self.resolve(defaults["metrics_file"]) if defaults.get("metrics_file") else ""
        self.history_keep: float = defaults.get("history_keep", schema.DEFAULTS_ONLY["history_keep"].default)
        self.notify_timeout: float = defaults.get("notify_timeout", schema.DEFAULTS_ONLY["notify_timeout"].default)
        self.ping_timeout: float = defaults.get("ping_timeout", schema.DEFAULTS_ONLY["ping_timeout"].default)
        self.warnings: list[str] = []  # from validate: allowed, but probably not what was meant

    def secret_names(self) -> set[str]:
        """Variables no process gets unless its job names them: every job's secrets, the Redis passwords."""
        names = set(self.defaults.get("secrets", []))
        for job in self.jobs.values():
            names.update(job.secrets)
            names.update([job.lock_password_env] if job.lock_password_env else [])
        for worker in self.workers.values():
            names.update(worker["secrets"])
        if self.defaults.get("lock_password_env"):
            names.add(self.defaults["lock_password_env"])
        return names

    def resolve(self, path: str) -> str:
        """`path` from the registry as an absolute path: relative to the file's directory, ~ expanded."""
        return os.path.join(self.base_dir, os.path.expanduser(path))

    def job(self, name: str) -> Job:
        from runjob.errors import UsageError

        if name in self.pipelines:
            raise UsageError(f'"{name}" is a pipeline, not a job (run it with `runjob {name}`)')
        if name not in self.jobs:
            raise UsageError(f'unknown job "{name}" in {self.path} (see `runjob list`)')
        return self.jobs[name]


def key(name: str) -> str:
    """`name` as a part of a dotted key path: bare if TOML allows it, else quoted (one line, always)."""
    import json

    return name if name and not name.strip(_BARE_CHARS) else json.dumps(name)


def state_dir_for(registry: Registry, path: str) -> str:
    """$RUNJOB_STATE_DIR (relative to the working dir), else `state_dir` (relative to the
    registry), else the per-registry default. The variable wins so that one registry file
    serves a host (its `state_dir`) and a pod whose only writable place is a volume."""
    override = os.environ.get("RUNJOB_STATE_DIR")
    if override:
        return os.path.abspath(os.path.expanduser(override))
    return registry.resolve(registry.defaults.get("state_dir") or default_state_dir(path))


def default_state_dir(registry_path: str) -> str:
    """Where a registry without `state_dir` keeps its state: one namespace per registry file
    (a short hash of its real path), so two checkouts' jobs of the same name never share a
    lock or a history."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    real = os.path.realpath(registry_path)
    return os.path.join(base, "runjob", f"{crc32(os.fsencode(real)):08x}")


def crc32(data: bytes) -> int:
    """zlib.crc32(data), which names every default state dir, without loading zlib's shared
    library (about half a millisecond of a run's start-up here, for a path of some 50 bytes)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


TEMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm")


def state_dir_warnings(registry: Registry) -> list[str]:
    """What `validate` and `show` say about the state dir: a tmp cleaner may remove lock files there."""
    real = os.path.realpath(registry.state_dir)
    for temp in TEMP_DIRS:
        if real == temp or real.startswith(temp + "/"):
            return [
                f"state_dir {registry.state_dir} is under {temp}, where a tmp cleaner may delete lock files "
                "and history; put it under /var/lib or ~/.local/state"
            ]
    return []
