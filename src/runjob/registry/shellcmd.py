"""`shell = true`: a string command run by `/bin/sh -c`, and the check that asks for it.

A param never enters the shell text: `{name}` becomes a quoted reference to
`$RUNJOB_PARAM_name`, and plan.py puts the value in the child's environment, so a value
is data to the shell, never code. Which reference depends on where the placeholder
stands: outside quotes `"$RUNJOB_PARAM_name"`, inside double quotes
`${RUNJOB_PARAM_name}`, inside single quotes the quote is closed around it. `${NAME}`
(a brace right after `$`) is the shell's own expansion and is left alone.

Only validate.py imports this module: the run path gets the finished argv from the registry.
"""

from __future__ import annotations

from runjob.registry.templating import _name_end

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SHELL = "/bin/sh"
PARAM_ENV_PREFIX = "RUNJOB_PARAM_"
_OPERATORS = ("&&", "$(", "|", ">", "<", ";")  # what a crontab line uses and shlex would split into words


def operator(text: str) -> str | None:
    """The first shell operator in `text` that a shell would act on, or None.

    Quote-aware: `'a|b'` and `"a;b"` are literal words, `\\;` is an escaped `;` (as in
    `find ... -exec rm {} \\;`); `$(` counts inside double quotes too, where a shell
    would still run it."""
    quote = ""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\" and quote != "'":
            i += 2
            continue
        if quote and c == quote:
            quote = ""
        elif not quote and c in "'\"":
            quote = c
        elif quote != "'":
            for op in _OPERATORS:
                if text.startswith(op, i) and (not quote or op == "$("):
                    return op
        i += 1
    return None


def _reference(name: str, quote: str) -> str:
    var = "RUNJOB_JOB" if name == "job" else PARAM_ENV_PREFIX + name
    if quote == '"':
        return "${{" + var + "}}"  # braces doubled: the result is a template
    if quote == "'":
        return "'\"$" + var + "\"'"
    return '"$' + var + '"'


def script(text: str) -> tuple[str, list[str]]:
    """`text` with every `{name}` turned into a quoted variable reference, and the names used.

    The result is a template for templating.substitute() in which every literal brace is
    doubled, so substituting leaves it exactly as the shell must see it."""
    out: list[str] = []
    used: list[str] = []
    quote = ""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\" and quote != "'":
            out.append(text[i : i + 2].replace("{", "{{").replace("}", "}}"))
            i += 2
            continue
        if c in "{}" and text.startswith(c + c, i):  # {{ / }}: one literal brace, as everywhere
            out.append(c + c)
            i += 2
            continue
        shells_own = i > 0 and text[i - 1] == "$"  # ${HOME}: the shell's expansion, not a placeholder
        end = _name_end(text, i + 1) if c == "{" and not shells_own else -1
        if end > 0:
            name = text[i + 1 : end]
            used.append(name)
            out.append(_reference(name, quote))
            i = end + 1
            continue
        if quote and c == quote:
            quote = ""
        elif not quote and c in "'\"":
            quote = c
        out.append(c + c if c in "{}" else c)
        i += 1
    return "".join(out), used


def check(name: str, raw: object, job: dict[str, Any], where: str, errors: list[str]) -> None:
    """validate.py's step for the command: a shell job's argv becomes `sh -c SCRIPT NAME`;
    a string command that needs a shell but has no `shell = true` is an error."""
    if not job.get("shell"):
        op = operator(raw) if isinstance(raw, str) else None
        if op:
            errors.append(
                f'{where}.command: "{op}" only means something to a shell, and the command is '
                "not run through one: set shell = true (or write the command as an argv list)"
            )
        return
    if not isinstance(raw, str):
        errors.append(f"{where}.command: shell = true needs the command as one string")
        return
    text, used = script(raw)
    for missing in dict.fromkeys(p for p in used if p != "job" and p not in job["params"]):
        errors.append(f'{where}.command: placeholder "{{{missing}}}" has no param (declare [{where}.params.{missing}])')
    job["command"] = [SHELL, "-c", text, name]  # $0 = the job name, so the shell's errors name it
