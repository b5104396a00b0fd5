"""The registry's keys, declared once: validation, defaults and `runjob schema` all come from here.

A key is a `Key(kind, default, doc)`; kinds are checked and converted by `config.py`
(durations become seconds, a command string is split with shlex) and turned into
JSON Schema by `json_schema()` below.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~5 ms of start-up; only the type checker needs it
if TYPE_CHECKING:
    from typing import Any

REQUIRED = object()  # a default that means "must be given"
MAX_ATTEMPTS = 100  # exponential backoff doubles per attempt: bounded, so no wait can overflow
MAX_DURATION_S = 365 * 86400  # durations.MAX_S: every duration is finite and at most this


class Key:
    """One registry key: its kind (how it is checked), default and doc."""

    __slots__ = ("kind", "default", "doc", "choices", "table", "minimum", "maximum")

    def __init__(
        self,
        kind: str,
        default: Any,
        doc: str,
        choices: tuple[str, ...] = (),
        table: dict[str, Key] | None = None,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> None:
        self.kind = kind  # str bool int duration argv cron enum str_list int_list str_map regex_list regex table
        self.default = default
        self.doc = doc
        self.choices = choices
        self.table = table  # sub-keys, for kind "table", "params", "owners", "jobs"
        self.minimum = minimum
        self.maximum = maximum


RETRY = {
    "attempts": Key("int", 1, "total number of attempts (1 = no retry)", minimum=1, maximum=MAX_ATTEMPTS),
    "backoff": Key("enum", "fixed", "how the wait grows", ("fixed", "exponential")),
    "delay": Key("duration", 0.0, "wait before the second attempt"),
    "max_delay": Key("duration", 300.0, "the longest wait, however far exponential backoff got"),
    "jitter": Key("bool", False, "randomise each wait between half and all of it"),
    "on_exit_codes": Key("int_list", [], "retry only these exit codes; empty: any non-zero"),
    "on_timeout": Key("bool", False, "retry an attempt that timed out"),
}

TRANSIENT = {
    "exit_codes": Key("int_list", [], "exit codes that mean 'try again next time'"),
    "stderr_patterns": Key("regex_list", [], "regexes searched in each stderr line"),
}

OWNERS_REF = {
    "responsible": Key("str", None, "owner paged on failure"),
    "accountable": Key("str", None, "owner sent a domain notice on failure"),
}

EXPECTED_DURATION = {
    "min": Key("duration", None, "a success faster than this is suspicious"),
    "max": Key("duration", None, "a run still going after this is suspicious"),
}

PARAM = {
    "pattern": Key("regex", r"[A-Za-z0-9][A-Za-z0-9._-]*", "every value must fully match"),
    "default": Key("str", None, "value when none is given; without it the param is required"),
    "description": Key("str", "", "what the param selects"),
    "omit_empty": Key(
        "bool", False, 'an empty value ("" or an empty default) leaves out every command element using it'
    ),
}

OWNER = {
    "command": Key("argv", None, "argv that gets the run record as JSON on stdin"),
    "webhook": Key("str", None, "URL that gets the run record as a JSON POST"),
}

# Keys a job may set; [defaults] may set all of them but `command`, `shell`, `params` and `instances`.
JOB = {
    "description": Key("str", "", "what the job does"),
    "command": Key("argv", REQUIRED, "argv (or a string split with shlex); run through a shell only with shell = true"),
    "shell": Key("bool", False, "run a string command with /bin/sh -c; params reach it as $RUNJOB_PARAM_name"),
    "schedule": Key("cron", None, "cron expression, @hourly ..., @every 90s, @at 2026-12-01T03:00:00Z or @manual"),
    "enabled": Key("bool", True, "false: never due (tick, exports); running it by name still works, with a warning"),
    "timezone": Key("str", None, "IANA time zone of the schedule (default: the host's)"),
    "catch_up": Key("duration", None, "tick: run a missed schedule once if missed by at most this"),
    "lock_key": Key("str", None, "lock name, may use {param}; default: the job name"),
    "timeout": Key("duration", 3600.0, "per attempt; then SIGTERM to the process group"),
    "kill_grace": Key("duration", 10.0, "SIGTERM, then SIGKILL after this"),
    "cwd": Key("str", None, "working directory, may use {param}"),
    "env": Key("str_map", {}, "variables added to the environment, values may use {param}"),
    "secrets": Key("str_list", [], "variable names whose values are passed but never logged"),
    "owners": Key("table", {}, "who is told when the job fails", table=OWNERS_REF),
    "idempotency": Key("str", "", "is it safe to re-run, and why"),
    "max_age": Key("duration", None, "stale if no success for this long"),
    "expected_duration": Key("table", {}, "normal run time", table=EXPECTED_DURATION),
    "ping_url": Key("str", "", "healthchecks-style URL: /start, success, /fail"),
    "retry": Key("table", {}, "retry policy", table=RETRY),
    "transient": Key("table", {}, "failures that are not worth a page", table=TRANSIENT),
    "params": Key("params", {}, "named parameters, each with a pattern", table=PARAM),
    "instances": Key("instances", [], 'param sets to schedule, e.g. [{ supplier = "acme" }]'),
    "log_file": Key("str", "", 'where JSON records go; "" = stdout; may use {job} and {param}'),
    "output": Key("enum", "json", "the child's output", ("json", "passthrough", "discard")),
    "on_busy": Key("enum", "skip", "when the lock is held", ("skip", "fail", "wait")),
    "wait": Key("duration", 0.0, 'how long on_busy = "wait" waits'),
    "lock_backend": Key("str", "", '"" = file locks; "redis://host:6379/0" for many hosts'),
    "lock_password_env": Key("str", None, "environment variable holding the Redis password"),
    "lock_ttl": Key(
        "duration", None, "Redis lock TTL, renewed while the run lasts (default: timeout + kill_grace + 60s)"
    ),
    "on_lock_lost": Key("enum", "kill", "a Redis lock lost mid-run", ("kill", "continue")),
    "lock_unavailable": Key("enum", "fail", "Redis unreachable at start", ("fail", "skip", "local")),
    "keep_runs": Key("int", 50, "how many runs' records state_dir/runs keeps per job", minimum=1, maximum=100000),
    "quiet": Key("enum", "off", 'stdout: "on-success" prints nothing for a run that succeeds', ("off", "on-success")),
    "dispatch": Key("enum", "run", 'tick: "run" starts the run, "queue" enqueues it', ("run", "queue")),
}

DEFAULTS_ONLY = {
    "state_dir": Key("str", None, "locks/ and history.sqlite3 live here"),
    "metrics_file": Key("str", "", "Prometheus textfile written after each run"),
    "history_keep": Key("duration", 90 * 86400.0, "history rows older than this are purged"),
    "notify_timeout": Key("duration", 10.0, "one deadline for all notifications of a run"),
    "ping_timeout": Key("duration", 10.0, "deadline of each ping's whole exchange"),
    "queue_backend": Key("str", "", '"" = the state dir\'s SQLite; "redis://host:6379/0" for many hosts'),
    "queue_lease": Key("duration", 60.0, "a queued run's lease, renewed by its worker; lapsed = pending again"),
    "stop_grace": Key("duration", 30.0, "SIGTERM to a worker: its runs get this long, then are stopped"),
}

DEFAULTS = {k: v for k, v in JOB.items() if k not in ("command", "shell", "params", "instances")} | DEFAULTS_ONLY

PIPELINE = {
    "description": JOB["description"],
    "stages": Key("stages", REQUIRED, "lists of job names: stages run in order, the jobs of a stage at once"),
    "schedule": JOB["schedule"],
    "timezone": JOB["timezone"],
    "enabled": JOB["enabled"],
    "catch_up": JOB["catch_up"],
    "params": Key("str_map", {}, "param values passed to every job of the pipeline that declares the param"),
    "timeout": Key("duration", None, "the whole pipeline; then its running jobs are stopped"),
    "lock_key": Key("str", None, "the pipeline's own lock; default: its name"),
    "owners": Key("table", {}, "told once when the pipeline fails, with the failed job named", table=OWNERS_REF),
}

TOP = {
    "defaults": Key("table", {}, "values every job inherits", table=DEFAULTS),
    "owners": Key("owners", {}, "people or teams to tell", table=OWNER),
    "jobs": Key("jobs", {}, "the registered jobs", table=JOB),
    "pipelines": Key("pipelines", {}, "staged runs of jobs; names shared with the jobs", table=PIPELINE),
    "workers": Key("workers", {}, "long-running workers kept up by `runjob supervise NAME`"),
}

JOB_NAME = r"[a-z0-9][a-z0-9._-]*"
LOCK_KEY = r"[A-Za-z0-9][A-Za-z0-9._-]*"
PARAM_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
SUBCOMMANDS = frozenset(
    "run list show validate status history stale locks export import tick init add schema help resume logs report "
    "serve enqueue worker queue supervise".split()
)

_DURATION_SCHEMA = {
    "oneOf": [
        {"type": "string", "pattern": r"^(\d+(\.\d+)?(ms|s|m|h|d))+$"},
        {"type": "number", "minimum": 0, "maximum": MAX_DURATION_S},
    ]
}


# JSON Schema of each kind of value that needs nothing from its Key.
_SIMPLE_SCHEMAS: dict[str, dict[str, Any]] = {
    "str": {"type": "string"},
    "cron": {"type": "string"},
    "regex": {"type": "string", "format": "regex"},
    "bool": {"type": "boolean"},
    "duration": _DURATION_SCHEMA,
    "argv": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]},
    "str_list": {"type": "array", "items": {"type": "string"}},
    "regex_list": {"type": "array", "items": {"type": "string", "format": "regex"}},
    "int_list": {"type": "array", "items": {"type": "integer"}},
    "str_map": {"type": "object", "additionalProperties": {"type": "string"}},
    "instances": {"type": "array", "items": {"type": "object", "additionalProperties": {"type": "string"}}},
    "stages": {
        "type": "array",
        "minItems": 1,
        "items": {"type": "array", "minItems": 1, "items": {"type": "string"}},
    },
}


def _key_schema(key: Key) -> dict[str, Any]:
    if key.kind in _SIMPLE_SCHEMAS:
        out = dict(_SIMPLE_SCHEMAS[key.kind])
    elif key.kind == "int":
        out = {"type": "integer"} | ({"minimum": key.minimum} if key.minimum is not None else {})
        out |= {"maximum": key.maximum} if key.maximum is not None else {}
    elif key.kind == "enum":
        out = {"enum": list(key.choices)}
    elif key.kind == "table":
        out = _table_schema(key.table or {})
    else:
        out = _named_tables_schema(key)
    out["description"] = key.doc
    return out


def _named_tables_schema(key: Key) -> dict[str, Any]:
    """ "params", "owners", "jobs", "pipelines", "workers": a table of named tables."""
    named = PARAM_NAME if key.kind == "params" else JOB_NAME
    return {
        "type": "object",
        "propertyNames": {"pattern": f"^{named}$"},
        "additionalProperties": _table_schema(key.table or {}),
    }


def _table_schema(keys: dict[str, Key]) -> dict[str, Any]:
    required = [name for name, key in keys.items() if key.default is REQUIRED]
    out: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {name: _key_schema(key) for name, key in keys.items()},
    }
    if required:
        out["required"] = required
    return out


# [workers.NAME] (SPEC section 10): checked by worker_config.py
SIGNALS = ("TERM", "INT", "QUIT", "HUP", "USR1", "USR2", "WINCH")
MAX_INSTANCES = 256
RESTART = {
    "policy": Key("enum", "always", "restart after any exit, or only a non-zero one", ("always", "on-failure")),
    "delay": Key("duration", 1.0, "wait before the first restart; doubles per restart in a row"),
    "max_delay": Key("duration", 60.0, "the longest wait between restarts"),
    "burst": Key("int", 5, "more restarts than this within `within`: give up", minimum=0, maximum=10000),
    "within": Key("duration", 60.0, "the window `burst` counts restarts in"),
}

OWNERS_REF = {
    "responsible": Key("str", None, "owner paged when the worker gives up"),
    "accountable": Key("str", None, "owner sent a domain notice when the worker gives up"),
}

WORKER = {
    "description": Key("str", "", "what the worker does"),
    "command": Key("argv", REQUIRED, "argv (or a string split with shlex); never run through a shell"),
    "cwd": Key("str", None, "working directory"),
    "env": Key("str_map", {}, "variables added to the environment"),
    "secrets": Key("str_list", [], "variable names whose values are passed but never logged"),
    "owners": Key("table", {}, "who is told when the worker gives up", table=OWNERS_REF),
    "instances": Key("int", 1, "copies kept running", minimum=1, maximum=MAX_INSTANCES),
    "stop_signal": Key("enum", "TERM", "signal that asks an instance to stop", SIGNALS),
    "stop_grace": Key("duration", 10.0, "after stop_signal, SIGKILL after this"),
    "memory_max": Key("str", None, 'RSS ceiling of an instance\'s process group, e.g. "512MiB"'),
    "max_lifetime": Key("duration", None, "recycle an instance gracefully after this long"),
    "heartbeat_timeout": Key("duration", None, "no output line or heartbeat-file touch for this long: restart"),
    "restart": Key("table", {}, "restart policy", table=RESTART),
}


def json_schema() -> dict[str, Any]:
    """The JSON Schema of jobs.toml (draft 2020-12)."""
    out = _table_schema(TOP)
    out["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    out["title"] = "runjob registry (jobs.toml)"
    out["properties"]["jobs"]["propertyNames"]["not"] = {"enum": sorted(SUBCOMMANDS)}
    out["properties"]["pipelines"]["propertyNames"]["not"] = {"enum": sorted(SUBCOMMANDS)}
    out["properties"]["workers"]["additionalProperties"] = _table_schema(WORKER)
    return out
