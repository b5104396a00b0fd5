"""Checks of a job's command that go beyond its type: shell syntax and `shell = true`
(SPEC section 1), and params that a program could read as options (a `validate` warning).
"""

from __future__ import annotations

import re

from runjob.config import Job, key
from runjob.templating import placeholders, shell_script, shell_syntax

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def shell_command(where: str, raw: Any, job: dict[str, Any], errors: list[str]) -> None:
    """`shell = true`: the string becomes `/bin/sh -c SCRIPT NAME`, each param a variable reference.
    Without it, a string with shell syntax is refused rather than split into literal words."""
    if not job["shell"]:
        operator = shell_syntax(raw) if isinstance(raw, str) else None
        if operator:
            errors.append(f'{where}.command: "{operator}" is shell syntax, but the command is not run by a shell; '
                          "set shell = true to run it with /bin/sh -c (or give an argv list)")  # fmt: skip
        return
    if not isinstance(raw, str):
        errors.append(f"{where}.shell: shell = true needs command as one string, not a list")
        return
    try:
        script, names = shell_script(raw)
    except ValueError as e:
        errors.append(f"{where}.command: {e}")
        return
    for name in dict.fromkeys(names):
        if name not in job["params"]:
            errors.append(f'{where}.command: placeholder "{{{name}}}" has no param (declare [{where}.params.{name}])')
    refs = {f"RUNJOB_PARAM_{n}": "{" + n + "}" for n in names if n in job["params"]}
    job["command"] = ["/bin/sh", "-c", script, where.split(".", 1)[1]]
    job["env"] = refs | job["env"]


# Values a pattern may let through that a program would read as an option.
_OPTION_SAMPLES = ("-", "--", "-a", "-x", "-f", "-0", "-1", "--a", "--help", "--remove-files", "-rf", "-a-b", "--x=1")


def option_like_params(job: Job) -> list[str]:
    """Warnings for params that are a whole argument and whose pattern allows a leading "-"."""
    whole = {arg[1:-1] for arg in job.command if placeholders(arg) == [arg[1:-1]]}
    out = []
    for name in sorted(whole & set(job.params)):
        pattern = job.params[name]["pattern"]
        if any(re.fullmatch(pattern, sample) for sample in _OPTION_SAMPLES):
            out.append(f'jobs.{key(job.name)}.params.{key(name)}: the pattern {pattern} allows a value starting with "-", '
                       f'and "{{{name}}}" is a whole argument, so the program may read it as an option '
                       f'(forbid a leading "-" in the pattern, or write "--opt={{{name}}}")')
    return out
