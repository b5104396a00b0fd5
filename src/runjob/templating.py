"""`{name}` placeholders, substituted per value: a param can never become a second argument.

Only `{identifier}` is special, and `{{` / `}}` stand for literal braces. This is not
str.format: no attribute access, no format specs, nothing that evaluates. A small
scanner rather than a regex: `runjob NAME` substitutes on every run and must not pay
for importing `re`.
"""

from __future__ import annotations

_IDENT_START = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_"
_IDENT = _IDENT_START + "0123456789"


def _tokens(template: str) -> list[tuple[str, bool]]:
    """(text, is_name) pieces of `template`; ValueError on a stray brace."""
    out: list[tuple[str, bool]] = []
    literal, i, n = "", 0, len(template)
    while i < n:
        c = template[i]
        if c in "{}" and template[i : i + 2] in ("{{", "}}"):
            literal, i = literal + c, i + 2
            continue
        if c == "{":
            end = template.find("}", i)
            name = template[i + 1 : end] if end > 0 else ""
            if name and name[0] in _IDENT_START and not name.strip(_IDENT):
                out.append((literal, False))
                out.append((name, True))
                literal, i = "", end + 1
                continue
        if c in "{}":
            raise ValueError(f'stray "{c}" in "{template}" (write {c}{c} for a literal brace)')
        literal, i = literal + c, i + 1
    out.append((literal, False))
    return out


def placeholders(template: str) -> list[str]:
    """Names used in `template`; raises ValueError on a stray brace."""
    return [text for text, is_name in _tokens(template) if is_name]


def substitute(template: str, values: dict[str, str]) -> str:
    """`template` with every `{name}` replaced by values[name] (KeyError if absent)."""
    if "{" not in template and "}" not in template:
        return template
    return "".join(values[text] if is_name else text for text, is_name in _tokens(template))
