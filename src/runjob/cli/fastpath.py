"""Everyday commands answered without typer and rich.

`runjob --version`, and `list`, `status`, `history` and `tick` when stdout is not a
terminal (scripts, monitoring, `| jq`, cron): off a terminal those always print JSON
(tick prints records anywhere), so no table is drawn and typer (about 37 ms of imports)
buys nothing. The same command functions run with the same values, so the output is
byte for byte the typer path's.

Only the plain forms are parsed here: `[--config F | -c F | --config=F]`, then the
command with its documented options (`--opt value` or `--opt=value`, each at most once).
Anything else (--help, an unknown or repeated option, a value that starts with `-` or a
non-numeric --limit) returns None and goes to the typer app, which parses and reports it
as it always has.
"""

from __future__ import annotations

from runjob import __version__
from runjob.startup import config_option

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# command -> (options taking a value, flags, how many positional arguments at most)
COMMANDS: dict[str, tuple[tuple[str, ...], tuple[str, ...], int]] = {
    "list": (("--at",), ("--json",), 0),
    "status": (("--at",), ("--json",), 0),
    "history": (("--limit", "--status", "--since"), ("--json",), 1),
    "tick": (("--at",), (), 0),
}


def answer(args: list[str], tty: bool) -> int | None:
    """The exit code of the command in `args` if answered here, else None (typer's turn)."""
    config, rest = config_option(args)
    if rest == ["--version"]:
        print(f"runjob {__version__}")
        return 0
    if tty or not rest or rest[0] not in COMMANDS:
        return None
    parsed = parse(rest[0], rest[1:])
    if parsed is None:
        return None
    values, positional = parsed
    return _run(rest[0], config, values, positional)


def parse(command: str, words: list[str]) -> tuple[dict[str, Any], list[str]] | None:
    """({option: value or True}, positionals) for `command`'s words, or None to leave them to typer."""
    options, flags, max_positional = COMMANDS[command]
    values: dict[str, Any] = {}
    positional: list[str] = []
    rest = list(words)
    while rest:
        word = rest.pop(0)
        name, eq, inline = word.partition("=")
        if not word.startswith("-") or word == "-":
            positional.append(word)
        elif word in flags and word not in values:
            values[word] = True
        elif name in options and name not in values and (eq or rest):
            value = inline if eq else rest.pop(0)
            if value.startswith("-"):
                return None
            values[name] = value
        else:
            return None
    if len(positional) > max_positional:
        return None
    limit = values.get("--limit", "50")
    if not (limit.isascii() and limit.isdecimal()):
        return None
    return values, positional


def _run(command: str, config: str | None, values: dict[str, Any], positional: list[str]) -> int:
    if command == "history":
        from runjob.cli.history import show_history

        name = positional[0] if positional else None
        limit = int(values.get("--limit", "50"))
        return show_history(config, name, limit, values.get("--status"), values.get("--since"), True)
    at = None
    if "--at" in values:  # cron.py loads datetime
        from runjob.triggers.cron import parse_at

        at = parse_at(values["--at"])
    if command == "tick":
        from runjob.cli.tick import tick

        return tick(config, at)
    if command == "list":
        from runjob.cli.inspect import list_jobs

        return list_jobs(config, True, at)
    from runjob.cli.status import show_status

    return show_status(config, True, at)
