"""Parse and check `jobs.toml` (SPEC section 1) into a config.Registry.

Every problem in the file is collected with its dotted key path and reported together
as one ConfigError (exit 78). Schedules are checked only when asked (`check_schedules`):
they need the cron library, which the crontab hot path (`runjob NAME`) does not load
because a schedule never changes what a run does.
"""

from __future__ import annotations

import re

from runjob.registry import schema, shellcmd
from runjob.registry.command_checks import option_like_params
from runjob.registry.config import Job, Registry, key, lock_key_problem
from runjob.registry.durations import parse_duration
from runjob.errors import ConfigError
from runjob.registry.schema import REQUIRED, Key
from runjob.registry.templating import expand_env, path_component_problem, placeholders, substitute

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_JOB_NAME = re.compile(schema.JOB_NAME)
_PARAM_NAME = re.compile(schema.PARAM_NAME)
_TEMPLATED = ("lock_key", "log_file", "cwd")
BUILTIN_PLACEHOLDERS = frozenset({"job"})


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
    jobs_raw = raw.get("jobs", {})
    if not isinstance(jobs_raw, dict):
        errors.append(f"jobs: expected a table, got {_type_name(jobs_raw)}")
        jobs_raw = {}
    jobs = {}
    for name, body in jobs_raw.items():
        job = _job(name, body, defaults, owners, errors)
        if job is not None:
            jobs[name] = job
    from runjob.registry.pipeline_config import pipelines

    registry = Registry(path, defaults, owners, jobs, pipelines(raw.get("pipelines", {}), jobs, defaults, owners, errors))
    if "workers" in raw:
        from runjob.supervisor.spec import parse_workers

        registry.workers = parse_workers(raw["workers"], owners, set(jobs_raw), errors)
    registry.warnings = [w for job in jobs.values() for w in option_like_params(job)]
    return registry


def _job(name: str, body: Any, defaults: dict[str, Any], owners: dict[str, Any], errors: list[str]) -> Job | None:
    where = f"jobs.{key(name)}"
    if not _JOB_NAME.fullmatch(name):
        errors.append(f"{where}: bad job name (must match {schema.JOB_NAME})")
    elif name in schema.SUBCOMMANDS:
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


def _builtin(table: dict[str, Key]) -> dict[str, Any]:
    return {name: spec.default for name, spec in table.items()}


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
                errors.append(f'{where}.schedule: param "{name}" has no default; list instances = [{{ {name} = "..." }}]')


def _check_instance_lock_keys(name: str, where: str, job: dict[str, Any], errors: list[str]) -> None:
    """Each instance's own lock key must name a lock file: a value can make a valid template bad."""
    if job["lock_key"] is None:
        return
    defaults = {k: spec["default"] for k, spec in job["params"].items() if spec["default"] is not None}
    for i, instance in enumerate(job["instances"]):
        try:
            lock_key = substitute(job["lock_key"], defaults | instance | {"job": name})
        except (KeyError, ValueError):
            continue  # a missing param or a bad template: reported above
        problem = lock_key_problem(lock_key)
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
    problem = lock_key_problem(sample)
    if problem:
        errors.append(f"{where}: {problem}")


def _owners(raw: Any, errors: list[str]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        errors.append(f"owners: expected a table, got {_type_name(raw)}")
        return {}
    owners = {}
    for name, body in raw.items():
        where = f"owners.{key(name)}"
        if not _JOB_NAME.fullmatch(name):
            errors.append(f"{where}: bad owner name (must match {schema.JOB_NAME})")
        values = _table(body, schema.OWNER, where, errors)
        if isinstance(body, dict) and not values.get("command") and not values.get("webhook"):
            errors.append(f"{where}: give a command or a webhook (or both)")
        owners[name] = _builtin(schema.OWNER) | values
    return owners


def _params(raw: Any, where: str, errors: list[str]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        errors.append(f"{where}: expected a table, got {_type_name(raw)}")
        return {}
    params = {}
    for name, body in raw.items():
        at = f"{where}.{key(name)}"
        if not _PARAM_NAME.fullmatch(name) or name in BUILTIN_PLACEHOLDERS:
            errors.append(f"{at}: bad param name (must match {schema.PARAM_NAME}, not 'job')")
        values = _builtin(schema.PARAM) | _table(body, schema.PARAM, at, errors)
        default = values["default"]
        if default is not None and isinstance(values["pattern"], str) and not (default == "" and values["omit_empty"]):
            if re.fullmatch(values["pattern"], default) is None:
                errors.append(f'{at}.default: "{default}" does not match the pattern {values["pattern"]}')
        params[name] = values
    return params


def _table(raw: Any, keys: dict[str, Key], where: str, errors: list[str]) -> dict[str, Any]:
    """Check the keys of one table; returns the converted values of the keys present."""
    if not isinstance(raw, dict):
        errors.append(f"{where}: expected a table, got {_type_name(raw)}")
        return {}
    _unknown_keys(raw, keys, where, errors)
    out: dict[str, Any] = {}
    for name, spec in keys.items():
        at = f"{where}.{name}" if where else name
        if name not in raw:
            if spec.default is REQUIRED:
                errors.append(f"{at}: required")
            continue
        if spec.kind == "table":
            out[name] = _table(raw[name], spec.table or {}, at, errors)
        elif spec.kind == "params":
            out[name] = _params(raw[name], at, errors)
        elif spec.kind == "instances":
            try:
                out[name] = convert(spec, raw[name])
            except ValueError as e:
                errors.append(f"{at}: {e}")
        elif spec.kind in ("owners", "jobs", "pipelines", "workers"):
            continue  # handled by _build
        else:
            try:
                out[name] = convert(spec, raw[name])
            except ValueError as e:
                errors.append(f"{at}: {e}")
    return out


def _unknown_keys(raw: dict[str, Any], keys: dict[str, Key], where: str, errors: list[str]) -> None:
    for name in raw:
        if name not in keys:
            at = f"{where}.{key(name)}" if where else key(name)
            errors.append(f"{at}: unknown key (known: {', '.join(sorted(keys))})")


def convert(key: Key, value: Any) -> Any:
    """`value` checked against `key.kind` and converted; ValueError says what is wrong."""
    kind = key.kind
    if kind == "duration":
        return parse_duration(value)
    if kind == "argv":
        return _argv(value)
    if kind in ("str", "cron"):
        return _text(_expect(value, str, "a string"))
    if kind == "regex":
        return _regex(_expect(value, str, "a string"))
    if kind == "bool":
        return _expect(value, bool, "true or false")
    if kind == "int":
        return _int(value, key.minimum, key.maximum)
    if kind == "enum":
        if value not in key.choices:
            raise ValueError(f"expected one of {', '.join(key.choices)}, got {value!r}")
        return value
    if kind in ("str_list", "regex_list"):
        items = [_expect(v, str, "a list of strings") for v in _expect(value, list, "a list")]
        items = [_text(v) for v in items] if kind == "str_list" else items
        return [_regex(v) for v in items] if kind == "regex_list" else items
    if kind == "int_list":
        return [_int(v, 0) for v in _expect(value, list, "a list of integers")]
    if kind == "str_map":
        table = _expect(value, dict, "a table of strings")
        return {k: _expect(v, str, f"a string for {k}") for k, v in table.items()}
    if kind == "stages":
        from runjob.registry.pipeline_config import stages

        return stages(value)
    if kind == "instances":
        items = _expect(value, list, "a list of param tables")
        return [convert(Key("str_map", None, ""), item) for item in items]
    raise AssertionError(f"unknown kind {kind}")


def _argv(value: Any) -> list[str]:
    if isinstance(value, str):
        import shlex

        try:
            value = shlex.split(value)
        except ValueError as e:
            raise ValueError(f"cannot split command string: {e}") from None
    argv = _expect(value, list, "a list of strings or a string")
    if not argv or not all(isinstance(a, str) for a in argv):
        raise ValueError("expected a non-empty list of strings")
    if not argv[0]:
        raise ValueError("the program (first element) is empty")
    return argv


def _expect(value: Any, typ: type, what: str) -> Any:
    if not isinstance(value, typ) or (typ is not bool and isinstance(value, bool)):
        raise ValueError(f"expected {what}, got {_type_name(value)} {value!r}"[:200])
    return value


def _int(value: Any, minimum: int | None, maximum: int | None = None) -> int:
    number: int = _expect(value, int, "an integer")
    if minimum is not None and number < minimum:
        raise ValueError(f"must be at least {minimum}, got {number}")
    if maximum is not None and number > maximum:
        raise ValueError(f"must be at most {maximum}, got {number}")
    return number


# Characters that end or break a line somewhere (C0, DEL, C1, U+2028/9): free text with one
# could add a line to a crontab, a systemd directive or a log line of an export.
_CONTROL = frozenset(chr(c) for c in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029))


def _text(value: str) -> str:
    bad = next((c for c in value if c in _CONTROL), None)
    if bad is not None:
        raise ValueError(f"control character U+{ord(bad):04X} not allowed here (free text stays on one line)")
    return value


def _regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as e:
        raise ValueError(f"bad regex {pattern!r}: {e}") from None
    return pattern


def _type_name(value: Any) -> str:
    return {dict: "table", list: "array", str: "string", bool: "boolean"}.get(type(value), type(value).__name__)


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
