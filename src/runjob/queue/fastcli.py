"""`[--config F] enqueue NAME [k=v ...] [--priority N] [--delay D | --at T]` without typer.

Anything else (help, an unknown flag, a flag without its value) is left to the typer app,
which gives the usual usage error; None says so.
"""

from __future__ import annotations

FLAGS = ("--priority", "--delay", "--at")


def enqueue_args(args: list[str]) -> int | None:
    config, rest = None, list(args)
    if rest[:1] in (["--config"], ["-c"]) and len(rest) >= 2:
        config, rest = rest[1], rest[2:]
    elif rest and rest[0].startswith("--config="):
        config, rest = rest[0].partition("=")[2], rest[1:]
    if rest[:1] != ["enqueue"] or len(rest) < 2 or rest[1].startswith("-"):
        return None
    name, words, flags = rest[1], [], dict.fromkeys(FLAGS)
    items = iter(rest[2:])
    for arg in items:
        key, eq, value = arg.partition("=")
        if key in FLAGS:
            flags[key] = value if eq else next(items, None)
            if flags[key] is None:
                return None
        elif arg.startswith("-"):
            return None
        else:
            words.append(arg)
    try:
        priority = int(flags["--priority"] or 0)
    except ValueError:
        return None
    from runjob.queue.enqueue import enqueue

    at = None
    if flags["--at"] is not None:
        from runjob.schedule.cron import parse_at

        at = parse_at(flags["--at"])
    return enqueue(config, name, words, priority, flags["--delay"], at)
