"""Params that a program could read as options (a `validate` warning; `shell = true` and
shell syntax are checked in shellcmd.py)."""

from __future__ import annotations

import re

from runjob.registry.config import Job, key
from runjob.registry.templating import placeholders

TYPE_CHECKING = False
if TYPE_CHECKING:
    pass


# Values a pattern may let through that a program would read as an option.
_OPTION_SAMPLES = ("-", "--", "-a", "-x", "-f", "-0", "-1", "--a", "--help", "--remove-files", "-rf", "-a-b", "--x=1")


def option_like_params(job: Job) -> list[str]:
    """Warnings for params that are a whole argument and whose pattern allows a leading "-"."""
    whole = {arg[1:-1] for arg in job.command if placeholders(arg) == [arg[1:-1]]}
    out = []
    for name in sorted(whole & set(job.params)):
        pattern = job.params[name]["pattern"]
        if any(re.fullmatch(pattern, sample) for sample in _OPTION_SAMPLES):
            out.append(
                f'jobs.{key(job.name)}.params.{key(name)}: the pattern {pattern} allows a value starting with "-", '
                f'and "{{{name}}}" is a whole argument, so the program may read it as an option '
                f'(forbid a leading "-" in the pattern, or write "--opt={{{name}}}")'
            )
    return out
