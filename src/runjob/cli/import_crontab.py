"""`runjob import crontab FILE`: an existing crontab as jobs.toml entries.

Each job line becomes a job: its schedule, its command (an argv list, or a `shell = true`
string when it uses pipes or redirections), the environment lines above it as `env`
(CRON_TZ as `timezone`), the comment right above it as `description`. A line
`run_job.sh NAME cmd ...` (the home-made wrapper runjob replaces) gives the job its name
and loses the wrapper. `@reboot` has no runjob schedule: the job is kept without one and
the report says how to start it. Whatever cannot be carried over as it was meant (cron's
`%` stdin, a system crontab's user field, MAILTO) is reported on stderr, line by line,
and as a comment at the top of the output; the exit code is then 1.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from typing import Any

from runjob.errors import UsageError
from runjob.registry import schema, shellcmd

ALIASES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
WRAPPERS = ("run_job.sh",)  # the hand-written wrapper: `run_job.sh NAME cmd args...`
_ENV_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")
_NAME_CHARS = re.compile(r"[^a-z0-9._-]+")
_FIELD = re.compile(r"^[0-9A-Za-z*/,#?LW-]+$")
CRON_ONLY = ("MAILTO", "MAILFROM", "SHELL", "CONTENT_TYPE", "CONTENT_TRANSFER_ENCODING")


@dataclass
class Imported:
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # "line N: what was not converted, and why"


def import_crontab(kind: str, path: str) -> int:
    if kind != "crontab":
        raise UsageError(f'import: only "crontab" can be imported, got "{kind}"')
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as e:
        raise UsageError(f"import: cannot read {path}: {e.strerror}") from None
    result = convert(text)
    for problem in result.problems:
        print(f"runjob: import: {path}: {problem}", file=sys.stderr)
    sys.stdout.write(render(result, path))
    return 1 if result.problems else 0


def render(result: Imported, path: str) -> str:
    import tomli_w

    head = [f"# Imported by `runjob import crontab` from {os.path.abspath(path)}."]
    head += [f"# NOT CONVERTED: {' '.join(p.splitlines())}" for p in result.problems]
    body = tomli_w.dumps({"jobs": result.jobs}, multiline_strings=False) if result.jobs else ""
    return "\n".join(head) + "\n\n" + body


def convert(text: str) -> Imported:
    """Every line of a crontab, in order: env lines carry on to the job lines after them."""
    out = Imported()
    env: dict[str, str] = {}
    comment = ""
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            comment = line.lstrip("#").strip() if line else ""
            continue
        m = _ENV_LINE.match(line)
        if m and not _looks_like_schedule(line):
            _env_line(number, m.group(1), _unquote(m.group(2)), env, out)
        else:
            _job_line(number, line, dict(env), comment, out)
        comment = ""
    return out


def _looks_like_schedule(line: str) -> bool:
    first = line.split(None, 1)[0]
    return first.startswith("@") or bool(_FIELD.match(first)) and "=" not in first


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _env_line(number: int, name: str, value: str, env: dict[str, str], out: Imported) -> None:
    if name in CRON_ONLY:
        if not (name == "SHELL" and value == "/bin/sh"):
            out.problems.append(f"line {number}: {name}={value} is cron's own setting: keep it in the crontab")
        return
    env[name] = value  # CRON_TZ included: _job_line turns it into timezone


def _split_schedule(line: str) -> tuple[str, str] | None:
    """(schedule, command) of a job line, or None if it has no schedule runjob can read."""
    if line.startswith("@"):
        alias, _, command = line.partition(" ")
        return alias.lower(), command.strip()
    fields = line.split(None, 5)
    if len(fields) < 6 or not all(_FIELD.match(f) for f in fields[:5]):
        return None
    return " ".join(fields[:5]), fields[5]


def _job_line(number: int, line: str, env: dict[str, str], comment: str, out: Imported) -> None:
    split = _split_schedule(line)
    if split is None:
        out.problems.append(f"line {number}: not a job line runjob can read: {line}")
        return
    schedule, command = split
    if _cron_percent(command):
        out.problems.append(f"line {number}: the command uses cron's % (the rest of the line as stdin): {line}")
        return
    command = command.replace("\\%", "%")
    job: dict[str, Any] = {}
    if comment:
        job["description"] = "".join(c for c in comment if c.isprintable())
    name, job["command"], shell = _command(command)
    program = command.split()[0] if shell else job["command"][0]
    if "/" in program and not program.startswith(("/", "~")) and "HOME" not in env:
        out.problems.append(
            f"line {number}: {program} is relative to the crontab owner's home under cron; "
            "runjob starts it in the registry's directory unless the job sets cwd"
        )
    elif "HOME" in env:
        job["cwd"] = env["HOME"]  # where cron starts the command
    if shell:
        job["shell"] = True
    if schedule == "@reboot":
        out.problems.append(
            f'line {number}: @reboot has no runjob schedule: job "{_unique(name, out)}" is '
            "imported without one; start it from a systemd unit or `@reboot runjob NAME`"
        )
    elif schedule.startswith("@") and schedule not in ALIASES:
        out.problems.append(f"line {number}: unknown schedule {schedule}: {line}")
        return
    else:
        job["schedule"] = schedule
    zone = env.pop("CRON_TZ", None)
    if zone:
        job["timezone"] = zone
    if env:
        job["env"] = env
    out.jobs[_unique(name, out)] = job


def _cron_percent(command: str) -> bool:
    """Does `command` have a bare `%` (cron's newline / stdin marker)?"""
    return re.search(r"(?<!\\)%", command.replace("\\\\", "")) is not None


def _command(command: str) -> tuple[str, str | list[str], bool]:
    """(job name, command, shell?) of one crontab command; a run_job.sh wrapper gives the name."""
    wrapped = re.match(r"^(\S+)\s+(\S+)\s+(.*)$", command)
    if wrapped and os.path.basename(wrapped.group(1)) in WRAPPERS:
        name, command = wrapped.group(2), wrapped.group(3).strip()
    else:
        name = ""
    if shellcmd.operator(command):
        return name or _name_from(command.split()), command.replace("{", "{{").replace("}", "}}"), True
    try:
        argv = shlex.split(command)
    except ValueError:  # unbalanced quotes: let the shell have it as it did under cron
        return name or _name_from(command.split()), command.replace("{", "{{").replace("}", "}}"), True
    return name or _name_from(argv), [w.replace("{", "{{").replace("}", "}}") for w in argv], False


INTERPRETERS = frozenset(
    {"sh", "bash", "dash", "php", "python", "python3", "perl", "ruby", "node", "env", "nice", "ionice"}
)


def _name_from(words: list[str]) -> str:
    """A job name from the program and its first argument: `php bin/console app:report` ->
    console-app-report (interpreters and options skipped, extensions dropped)."""
    picked = [os.path.basename(w).rsplit(".", 1)[0] or w for w in words if not w.startswith("-")]
    while len(picked) > 1 and picked[0] in INTERPRETERS:
        picked = picked[1:]
    return "-".join(picked[:2])


def _unique(name: str, out: Imported) -> str:
    """A valid job name, not a subcommand, not taken yet (a numbered suffix otherwise)."""
    base = _NAME_CHARS.sub("-", name.lower()).strip("-._")[:60] or "job"
    if base in schema.SUBCOMMANDS:
        base = f"job-{base}"
    candidate, n = base, 2
    while candidate in out.jobs:
        candidate, n = f"{base}-{n}", n + 1
    return candidate
