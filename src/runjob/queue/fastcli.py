"""`enqueue` and `worker` without typer.

`[--config F] enqueue NAME [k=v ...] [--priority N] [--delay D | --at T]` is scripted in loops;
`[--config F] worker [--concurrency N] [--burst] [--max-jobs N] [--max-time D]` is forked once
per run, so whatever it imported is in every run's process: typer and click (about 40 ms of
imports and several MB resident) would buy it nothing. Anything else (help, an unknown or
repeated flag, a flag without its value, a value that is not a number where one is needed)
is left to the typer app, which gives the usual usage error; None says so.
"""

from __future__ import annotations

from runjob.startup import config_option

TYPE_CHECKING = False
if TYPE_CHECKING:
    from runjob.queue.forked import RunPath

FLAGS = ("--priority", "--delay", "--at")
WORKER_OPTIONS = ("--concurrency", "--max-jobs", "--max-time")


def enqueue_args(args: list[str]) -> int | None:
    config, rest = config_option(args)
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
        from runjob.triggers.cron import parse_at

        at = parse_at(flags["--at"])
    return enqueue(config, name, words, priority, flags["--delay"], at)


def parse_worker(words: list[str]) -> dict[str, str | bool] | None:
    """{option: value, "--burst": True} for `worker`'s words, or None to leave them to typer."""
    values: dict[str, str | bool] = {}
    rest = list(words)
    while rest:
        word = rest.pop(0)
        name, eq, inline = word.partition("=")
        if word == "--burst" and word not in values:
            values[word] = True
        elif name in WORKER_OPTIONS and name not in values and (eq or rest):
            value = inline if eq else rest.pop(0)
            if value.startswith("-") or (name != "--max-time" and not (value.isascii() and value.isdecimal())):
                return None
            values[name] = value
        else:
            return None
    return values


def worker_args(args: list[str], path: RunPath) -> int | None:
    config, rest = config_option(args)
    if rest[:1] != ["worker"]:
        return None
    values = parse_worker(rest[1:])
    if values is None:
        return None
    from runjob.queue.worker import WorkerFlags, work

    max_jobs = values.get("--max-jobs")
    max_time = values.get("--max-time")
    flags = WorkerFlags(
        int(str(values.get("--concurrency", "1"))),
        bool(values.get("--burst")),
        None if max_jobs is None else int(str(max_jobs)),
        None if max_time is None else str(max_time),
    )
    return work(config, flags, path)
