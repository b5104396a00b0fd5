"""`{name}` placeholders, substituted per value: a param can never become a second argument.

Only `{identifier}` is special, and `{{` / `}}` stand for literal braces. This is not
str.format: no attribute access, no format specs, nothing that evaluates.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}|[{}]")


def placeholders(template: str) -> list[str]:
    """Names used in `template`; raises ValueError on a stray brace."""
    names = []
    for m in _TOKEN.finditer(template):
        tok = m.group(0)
        if m.group(1):
            names.append(m.group(1))
        elif tok in ("{", "}"):
            raise ValueError(f'stray "{tok}" in "{template}" (write {tok}{tok} for a literal brace)')
    return names


def substitute(template: str, values: dict[str, str]) -> str:
    """`template` with every `{name}` replaced by values[name] (KeyError if absent)."""
    if "{" not in template and "}" not in template:
        return template

    def repl(m: re.Match[str]) -> str:
        tok = m.group(0)
        if m.group(1):
            return values[m.group(1)]
        if tok in ("{{", "}}"):
            return tok[0]
        raise ValueError(f'stray "{tok}" in "{template}"')

    return _TOKEN.sub(repl, template)
