"""`{name}` placeholders, substituted per value: a param can never become a second argument.

Only `{` + identifier + `}` is a placeholder (SPEC section 1). `{{` and `}}` stand for one
literal brace, and every other brace is literal as written, so `find . -exec rm {} ;`
works unchanged. This is not str.format: no attribute access, no format specs, nothing
that evaluates. A small scanner rather than a regex: `runjob NAME` substitutes on every
run and must not pay for importing `re`. The scan is linear: each character is looked
at a bounded number of times, so `validate` stays fast on a huge value.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

_IDENT_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_IDENT = _IDENT_START | frozenset("0123456789")
MAX_NAME = 100  # a longer run of identifier characters after "{" is literal text, not a name


def _name_end(template: str, start: int) -> int:
    """Index of the "}" closing a placeholder name that begins at `start`, or -1."""
    n = len(template)
    if start >= n or template[start] not in _IDENT_START:
        return -1
    i = start + 1
    limit = min(n, start + MAX_NAME)
    while i < limit and template[i] in _IDENT:
        i += 1
    return i if i < n and template[i] == "}" else -1


def _tokens(template: str) -> list[tuple[str, bool]]:
    """(text, is_name) pieces of `template`; never fails: a brace that is no placeholder is literal."""
    out: list[tuple[str, bool]] = []
    literal: list[str] = []
    i, n = 0, len(template)
    next_open = next_close = -1  # where the next "{" / "}" is, found once each, not once per brace
    while i < n:
        if next_open < i:
            next_open = template.find("{", i) % (n + 1)  # -1 (none left) becomes n
        if next_close < i:
            next_close = template.find("}", i) % (n + 1)
        j = min(next_open, next_close)
        literal.append(template[i:j])
        if j >= n:
            break
        c = template[j]
        if template.startswith(c + c, j):  # "{{" or "}}": one literal brace
            literal.append(c)
            i = j + 2
            continue
        end = _name_end(template, j + 1) if c == "{" else -1
        if end < 0:
            literal.append(c)
            i = j + 1
            continue
        out.append(("".join(literal), False))
        out.append((template[j + 1 : end], True))
        literal, i = [], end + 1
    out.append(("".join(literal), False))
    return out


def placeholders(template: str) -> list[str]:
    """Names used in `template`, in order (a name used twice is listed twice)."""
    if "{" not in template:
        return []
    return [text for text, is_name in _tokens(template) if is_name]


def substitute(template: str, values: dict[str, str]) -> str:
    """`template` with every `{name}` replaced by values[name] (KeyError if absent)."""
    if "{" not in template and "}" not in template:
        return template
    return "".join(values[text] if is_name else text for text, is_name in _tokens(template))


def expand_env(template: str, lookup: Callable[[str], str | None]) -> str:
    """`$NAME` and `${NAME}` in an `env` value replaced by lookup(NAME) ("" when unset, as in
    sh), `$$` by one `$`; any other `$` is literal. The result is still a template: braces
    in a looked-up value are doubled, so only the registry's own `{param}` is substituted
    after it, and a param value is never expanded."""
    if "$" not in template:
        return template
    out: list[str] = []
    i, n = 0, len(template)
    while i < n:
        j = template.find("$", i)
        if j < 0:
            out.append(template[i:])
            break
        out.append(template[i:j])
        braced = template.startswith("{", j + 1)
        end = _name_end(template, j + 2) if braced else _bare_name_end(template, j + 1)
        if template.startswith("$$", j):
            out.append("$")
            i = j + 2
        elif end < 0:
            out.append("$")
            i = j + 1
        else:
            name = template[j + 2 : end] if braced else template[j + 1 : end]
            out.append((lookup(name) or "").replace("{", "{{").replace("}", "}}"))
            i = end + 1 if braced else end
    return "".join(out)


def _bare_name_end(template: str, start: int) -> int:
    """End of a `$NAME` name that begins at `start` (exclusive), or -1 if none begins there."""
    n = len(template)
    if start >= n or template[start] not in _IDENT_START:
        return -1
    i = start + 1
    while i < n and template[i] in _IDENT:
        i += 1
    return i


def path_component_problem(value: str) -> str | None:
    """Why `value` cannot be put into a path as one component (SPEC section 1), or None."""
    if value in ("", ".", ".."):
        return f'"{value}" is not a file name'
    for bad, what in (("/", '"/"'), ("\0", "a NUL byte"), ("\n", "a newline"), ("\r", "a carriage return")):
        if bad in value:
            return f"it contains {what}"
    return None
