"""A job plus its params, resolved: exactly what a run will do. `--dry-run` prints it.

Params are checked here (unknown, missing, not matching their pattern: usage errors,
exit 2) and substituted into each argv element, the lock key, the log file, cwd and
env values separately, so a value can never become a second argument.
"""

from __future__ import annotations

import os

from runjob.errors import UsageError
from runjob.records.redact import MASK, Redactor, needles
from runjob.registry import budget, lock_keys
from runjob.registry.config import Job, Registry
from runjob.registry.templating import expand_env, path_component_problem, placeholders, substitute

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

OUTPUT_MODES = ("json", "passthrough", "discard")


class Overrides:
    """What the command line changes for one run (`--timeout`, `--no-retry`, `--output`, `--log-file`)."""

    __slots__ = ("timeout", "no_retry", "output", "log_file")

    def __init__(
        self,
        timeout: float | None = None,
        no_retry: bool = False,
        output: str | None = None,
        log_file: str | None = None,
    ) -> None:
        self.timeout = timeout
        self.no_retry = no_retry
        self.output = output
        self.log_file = log_file  # "" = stdout

    def any(self) -> bool:
        return self.timeout is not None or self.no_retry or self.output is not None or self.log_file is not None


class Plan:
    """Everything a run needs, with no templates left. Treated as frozen.

    A plain class with slots rather than a dataclass: `dataclasses` imports `re` and
    `inspect`, which `runjob NAME` must not pay for."""

    __slots__ = (
        "job",
        "name",
        "params",
        "argv",
        "cwd",
        "env",
        "secret_values",
        "withheld",
        "lock_key",
        "lock_file",
        "lock_ttl",
        "state_dir",
        "log_file",
        "output",
        "timeout",
        "kill_grace",
        "retry",
        "registry_path",
    )

    def __init__(
        self,
        *,
        job: Job,
        name: str,
        params: dict[str, str],
        argv: list[str],
        cwd: str,
        env: dict[str, str],
        secret_values: list[str],
        withheld: frozenset[str],
        lock_key: str,
        lock_file: str,
        lock_ttl: float,
        state_dir: str,
        log_file: str,
        output: str,
        timeout: float,
        kill_grace: float,
        retry: dict[str, Any],
        registry_path: str,
    ) -> None:
        self.job = job
        self.name = name
        self.params = params  # as shown (records, history, dry run): secret values masked
        self.argv = argv
        self.cwd = cwd
        self.env = env  # what the job adds to the inherited environment
        self.secret_values = secret_values
        self.withheld = withheld  # inherited variables the child does not get (other jobs' secrets, Redis passwords)
        self.lock_key = lock_key
        self.lock_file = lock_file
        self.lock_ttl = lock_ttl  # budget.lock_ttl: the Redis key's TTL (for a job with a lock_backend)
        self.state_dir = state_dir
        self.log_file = log_file  # "" = stdout
        self.output = output
        self.timeout = timeout  # budget.effective_timeout: the child's deadline per attempt
        self.kill_grace = kill_grace
        self.retry = retry
        self.registry_path = registry_path

    def redact(self, text: str) -> str:
        return Redactor(self.secret_values).text(text) if self.secret_values else text

    def shown_env(self, env: dict[str, str] | None = None) -> dict[str, str]:
        """`env` (default: what the job adds) as records and the dry run may show it: the job's
        secrets masked by name, any other value with a secret in it masked where it appears."""
        shown = self.env if env is None else env
        return {k: MASK if k in self.job.secrets else self.redact(v) for k, v in shown.items()}


def parse_params(args: list[str]) -> dict[str, str]:
    """`key=value` words into a dict; anything else is a usage error."""
    params: dict[str, str] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            raise UsageError(f'bad param "{arg}": expected key=value')
        if key in params:
            raise UsageError(f'param "{key}" given twice')
        params[key] = value
    return params


def resolve_params(job: Job, given: dict[str, str]) -> dict[str, str]:
    unknown = sorted(set(given) - set(job.params))
    if unknown:
        known = ", ".join(sorted(job.params)) or "none"
        raise UsageError(f'unknown param "{unknown[0]}" for job "{job.name}" (known: {known})')
    values: dict[str, str] = {}
    if job.params:
        import re  # only jobs with params pay for it
    for name, spec in job.params.items():
        value = given.get(name, spec["default"])
        if value == "" and spec.get("omit_empty"):  # "not given": its argv elements are left out
            values[name] = value
            continue
        if value is None:
            raise UsageError(f'job "{job.name}" needs param "{name}" ({name}=VALUE, pattern {spec["pattern"]})')
        if "\0" in value or re.fullmatch(spec["pattern"], value) is None:
            shown = value.replace("\0", "\\0")[:100]
            raise UsageError(f'param {name}="{shown}" does not match its pattern {spec["pattern"]}')
        values[name] = value
    return values


def build(registry: Registry, name: str, given: dict[str, str], overrides: Overrides | None = None) -> Plan:
    """The plan of job `name` run with the params `given` and the command line's `overrides`."""
    job = registry.job(name)
    over = overrides or Overrides()
    params = resolve_params(job, given)
    values = params | {"job": name}
    lock_key = _lock_key(job, params)
    env = _env(registry, job, params, values)
    if over.output is not None and over.output not in OUTPUT_MODES:
        raise UsageError(f'--output must be one of {", ".join(OUTPUT_MODES)}, got "{over.output}"')
    _check_path_params(job, params)
    log = substitute(job.log_file, values) if over.log_file is None else over.log_file
    secrets = _secret_values(job.secrets, env)
    return Plan(
        job=job,
        name=name,
        params=Redactor(secrets).value(params) if secrets else params,
        argv=_argv(job, params, values),
        cwd=registry.resolve(substitute(job.cwd, values)) if job.cwd else registry.base_dir,
        env=env,
        secret_values=secrets,
        withheld=frozenset(registry.secret_names() - set(job.secrets)),
        lock_key=lock_key,
        lock_file=lock_keys.lock_file(registry.state_dir, lock_key),
        lock_ttl=budget.lock_ttl(job, over.timeout),
        state_dir=registry.state_dir,
        log_file=registry.resolve(log) if log else "",
        output=over.output or job.output,
        timeout=budget.effective_timeout(job, over.timeout),
        kill_grace=job.kill_grace,
        retry=dict(job.retry) | ({"attempts": 1} if over.no_retry else {}),
        registry_path=registry.path,
    )


def _lock_key(job: Job, params: dict[str, str]) -> str:
    key = lock_keys.resolve(job.lock_key, job.name, params)
    problem = lock_keys.problem(key)
    if problem:
        raise UsageError(f"{problem}, made from the params {params}")
    return key


def _env(registry: Registry, job: Job, params: dict[str, str], values: dict[str, str]) -> dict[str, str]:
    """What the job adds to the child's environment: its env values ($VAR and {param} expanded)
    and, for `shell = true`, each param as $RUNJOB_PARAM_name (see shellcmd.py)."""
    lookup = _inherited(registry, job) if any("$" in v for v in job.env.values()) else None
    env = {k: substitute(expand_env(v, lookup) if lookup else v, values) for k, v in job.env.items()}
    if job.values.get("shell"):
        env |= {"RUNJOB_PARAM_" + k: v for k, v in params.items()}
    return env


def _inherited(registry: Registry, job: Job) -> Callable[[str], str | None]:
    """What `$NAME` in an env value reads: runjob's environment, less what the child may not
    get (other jobs' secrets, Redis passwords), so a reference cannot smuggle one in."""
    withheld = registry.secret_names() - set(job.secrets)
    return lambda name: None if name in withheld else os.environ.get(name)


def _argv(job: Job, params: dict[str, str], values: dict[str, str]) -> list[str]:
    """The command with params substituted; an element using an `omit_empty` param whose
    value is "" is left out whole (so `--since={since}` disappears, not becomes `--since=`)."""
    omitted = {n for n, spec in job.params.items() if spec.get("omit_empty") and params.get(n) == ""}
    if not omitted:
        return [substitute(arg, values) for arg in job.command]
    return [substitute(arg, values) for arg in job.command if omitted.isdisjoint(placeholders(arg))]


def _check_path_params(job: Job, params: dict[str, str]) -> None:
    """A param put into log_file or cwd must stay one path component, whatever its pattern allows."""
    for field in ("log_file", "cwd"):
        for name in placeholders(getattr(job, field) or ""):
            problem = path_component_problem(params[name]) if name in params else None
            if problem:
                shown = params[name].replace("\0", "\\0").replace("\n", "\\n")[:100]
                raise UsageError(
                    f'param {name}="{shown}" cannot go into {field}: {problem} '
                    "(a param in a path must stay one file name)"
                )


def _secret_values(names: list[str], env: dict[str, str]) -> list[str]:
    """Values to mask in records (see redact.needles)."""
    return needles([env.get(n, os.environ.get(n, "")) for n in names])


def job_words(registry: Registry, job: str, params: dict[str, str]) -> list[str]:
    """`JOB k=v ...` with the pipeline's params that the job declares."""
    return [job] + [f"{k}={v}" for k, v in params.items() if k in registry.jobs[job].params]
