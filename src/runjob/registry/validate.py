"""Parse and check `jobs.toml` (SPEC section 1) into a config.Registry.

Every problem in the file is collected with its dotted key path and reported together
as one ConfigError (exit 78). Schedules are checked only when asked (`check_schedules`):
they need the cron library, which the crontab hot path (`runjob NAME`) does not load
because a schedule never changes what a run does.
"""

from __future__ import annotations

import re

from runjob.errors import ConfigError
from runjob.registry import lock_keys, schema, shellcmd
from runjob.registry.command_checks import option_like_params
from runjob.registry.config import Job, Registry, key
from runjob.registry.tables import BUILTIN_PLACEHOLDERS, _builtin, _table, _unknown_keys, named_tables
from runjob.registry.templating import expand_env, path_component_problem, placeholders, substitute

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_TEMPLATED = ("lock_key", "log_file", "cwd")


def parse_bytes(data: bytes, path: str = "<string>", check_schedules: bool = True) -> Registry:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError([f"not UTF-8 (byte {e.start})"], path) from None
    return parse_string(text, path, check_schedules)


def parse_string(text: str, path: str = "<string>", check_schedules: bool = True) -> Registry:
    import tomllib

    try:
        raw = tomllib.loads(text)
        errors: list[str] = []
        registry = _build(raw, path, errors)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([_syntax_error(str(e))], path) from None
    except RecursionError:  # tomllib (and repr) recurse once per level of a nested array or table
        raise ConfigError(["a value is nested too deeply (arrays or tables within each other)"], path) from None
    if check_schedules:
        _check_schedules(registry, errors)
    if errors:
        from runjob.records.redact import Redactor, registry_secrets

        raise ConfigError([Redactor(registry_secrets(raw)).text(e) for e in errors], path)  # no secret in a message
    return registry


def _syntax_error(message: str) -> str:
    m = re.search(r"\(at line (\d+), column (\d+)\)", message)
    if m is None:
        return f"TOML syntax error: {message}"
    what = message[: m.start()].strip()
    return f"line {m.group(1)}, column {m.group(2)}: TOML syntax error: {what}"


def _build(raw: dict[str, Any], path: str, errors: list[str]) -> Registry:
    _unknown_keys(raw, schema.TOP, "", errors)
    defaults = _table(raw.get("defaults", {}), schema.DEFAULTS, "defaults", errors)
    if defaults.get("queue_backend"):
        from runjob.locks import redis_lock

        problem = redis_lock.url_problem(defaults["queue_backend"])
        errors.extend([f"defaults.queue_backend: {problem}"] if problem else [])
    owners = _owners(raw.get("owners", {}), errors)
    jobs, job_names = {}, set()
    for name, body, where, valid in named_tables(raw.get("jobs", {}), "jobs", "job", errors):
        job_names.add(name)
        job = _job(name, body, where, valid, defaults, owners, errors)
        if job is not None:
            jobs[name] = job
    from runjob.registry.pipeline_config import pipelines

    registry = Registry(
        path, defaults, owners, jobs, pipelines(raw.get("pipelines", {}), jobs, defaults, owners, errors)
    )
    if "workers" in raw:
        from runjob.registry.worker_config import parse_workers

        registry.workers = parse_workers(raw["workers"], owners, job_names, errors)
    registry.warnings = [w for job in jobs.values() for w in option_like_params(job)]
    return registry


def _job(
    name: str, body: Any, where: str, valid: bool, defaults: dict[str, Any], owners: dict[str, Any], errors: list[str]
) -> Job | None:
    if valid and name in schema.SUBCOMMANDS:
        errors.append(f'{where}: "{name}" is a runjob subcommand and cannot name a job')
    values = _table(body, schema.JOB, where, errors)
    if "command" not in values:
        return None
    merged = _merge(defaults, values)
    shellcmd.check(name, body.get("command"), merged, where, errors)
    _check_job(name, merged, owners, errors)
    return Job(name, merged)


def _merge(defaults: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """Built-in defaults <- [defaults] <- the job; tables and env merge key by key."""
    merged: dict[str, Any] = {}
    for name, spec in schema.JOB.items():
        if spec.kind == "table":
            merged[name] = _builtin(spec.table or {}) | defaults.get(name, {}) | values.get(name, {})
        elif spec.kind == "str_map":
            merged[name] = defaults.get(name, {}) | values.get(name, {})
        elif name == "secrets":
            merged[name] = sorted(set(defaults.get(name, [])) | set(values.get(name, [])))
        else:
            merged[name] = values.get(name, defaults.get(name, spec.default))
    return merged


def _check_job(name: str, job: dict[str, Any], owners: dict[str, Any], errors: list[str]) -> None:
    where = f"jobs.{key(name)}"
    known = set(job["params"]) | BUILTIN_PLACEHOLDERS
    fields = [(f"command[{i}]", arg) for i, arg in enumerate(job["command"])]
    fields += [(k, job[k]) for k in _TEMPLATED if job[k]]
    fields += [(f"env.{key(k)}", expand_env(v, lambda _: None)) for k, v in job["env"].items()]  # ${VAR}: no param
    for field, template in fields:
        missing = dict.fromkeys(p for p in placeholders(template) if p not in known)  # each name once
        for p in missing:
            errors.append(f'{where}.{field}: placeholder "{{{p}}}" has no param (declare [{where}.params.{p}])')
    if job["lock_key"] is not None:
        _check_lock_template(job["lock_key"], f"{where}.lock_key", errors)
    _check_lock_backend(where, job, errors)
    for role, owner in job["owners"].items():
        if owner is not None and owner not in owners:
            errors.append(f'{where}.owners.{role}: owner "{owner}" is not declared in [owners]')
    _check_instances(where, job, errors)
    _check_instance_lock_keys(name, where, job, errors)
    bounds = job["expected_duration"]
    if bounds["min"] is not None and bounds["max"] is not None and bounds["min"] > bounds["max"]:
        errors.append(f"{where}.expected_duration: min is greater than max")


def _check_instances(where: str, job: dict[str, Any], errors: list[str]) -> None:
    """Each instance must be a valid param set; a schedule needs some way to fill every param."""
    params = job["params"]
    in_paths = {p for field in ("log_file", "cwd") for p in placeholders(job[field] or "")}
    for name in sorted(in_paths & set(params)):  # the run would refuse it (exit 2): say so now
        problem = path_component_problem(params[name]["default"]) if params[name]["default"] is not None else None
        if problem:
            errors.append(f"{where}.params.{key(name)}.default: cannot go into a path: {problem}")
    for i, instance in enumerate(job["instances"]):
        at = f"{where}.instances[{i}]"
        for name, value in instance.items():
            if name in in_paths and path_component_problem(value):
                errors.append(f"{at}.{key(name)}: cannot go into a path: {path_component_problem(value)}")
            if name not in params:
                errors.append(f"{at}: unknown param {key(name)}")
            elif isinstance(params[name]["pattern"], str) and not re.fullmatch(params[name]["pattern"], value):
                errors.append(f'{at}.{key(name)}: "{value}" does not match the pattern {params[name]["pattern"]}')
        for name, spec in params.items():
            if name not in instance and spec["default"] is None:
                errors.append(f'{at}: param "{name}" is required')
    if job["schedule"] and not job["instances"]:
        for name, spec in params.items():
            if spec["default"] is None:
                errors.append(
                    f'{where}.schedule: param "{name}" has no default; list instances = [{{ {name} = "..." }}]'
                )


def _check_instance_lock_keys(name: str, where: str, job: dict[str, Any], errors: list[str]) -> None:
    """Each instance's own lock key must name a lock file: a value can make a valid template bad."""
    if job["lock_key"] is None:
        return
    defaults = {k: spec["default"] for k, spec in job["params"].items() if spec["default"] is not None}
    for i, instance in enumerate(job["instances"]):
        try:
            lock_key = lock_keys.resolve(job["lock_key"], name, defaults | instance)
        except (KeyError, ValueError):
            continue  # a missing param or a bad template: reported above
        problem = lock_keys.problem(lock_key)
        if problem:
            errors.append(f"{where}.instances[{i}]: {problem}")


def _check_lock_backend(where: str, job: dict[str, Any], errors: list[str]) -> None:
    """A Redis URL without a password in it, and a TTL that lets the child be stopped in time."""
    from runjob.locks import redis_lock

    backend = job["lock_backend"]
    if not backend:
        return
    problem = redis_lock.url_problem(backend)
    if problem:
        errors.append(f"{where}.lock_backend: {problem}")
    if job["lock_ttl"] is not None:
        problem = redis_lock.ttl_problem(job["lock_ttl"], job["kill_grace"])
        if problem:
            errors.append(f"{where}.lock_ttl: {problem}")


def _check_lock_template(template: str, where: str, errors: list[str]) -> None:
    sample = substitute(template, {p: "x" for p in placeholders(template)})
    problem = lock_keys.problem(sample)
    if problem:
        errors.append(f"{where}: {problem}")


def _owners(raw: Any, errors: list[str]) -> dict[str, Any]:
    owners = {}
    for name, body, where, _valid in named_tables(raw, "owners", "owner", errors):
        values = _table(body, schema.OWNER, where, errors)
        if isinstance(body, dict) and not values.get("command") and not values.get("webhook"):
            errors.append(f"{where}: give a command or a webhook (or both)")
        owners[name] = _builtin(schema.OWNER) | values
    return owners


def _check_schedules(registry: Registry, errors: list[str]) -> None:
    from runjob.schedule import cron, timers

    tables = [("jobs", job) for job in registry.jobs.values()] + [("pipelines", p) for p in registry.pipelines.values()]
    for table, job in tables:
        if job.schedule is not None:
            plain = timers.kind(job.schedule) == timers.CRON
            problem = cron.problem(job.schedule) if plain else timers.problem(job.schedule)
            if problem:
                errors.append(f"{table}.{key(job.name)}.schedule: {problem}")
        if job.timezone is not None:
            problem = cron.timezone_problem(job.timezone)
            if problem:
                errors.append(f"{table}.{key(job.name)}.timezone: {problem}")
