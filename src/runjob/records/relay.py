"""Whole records from several runs into one pipe (`runjob tick | reader`).

A pipe writes at most PIPE_BUF (4 KiB) bytes atomically, and records may be up to the
record size limit (16 KiB by default), so runs that share a pipe would tear each other's
records. When tick's stdout is a pipe or a socket, each run it starts gets its own pipe,
and tick copies whole lines from those pipes to its stdout, one writer, until every run
has closed its end. A regular file needs none of this: runs inherit it, and each record
write to it lands whole.
"""

from __future__ import annotations

import os
import select
import stat

from runjob.records.output_records import write_all

MAX_PENDING = 1024 * 1024  # a "line" longer than this is passed on in pieces, newline-ended


def needed(fd: int = 1) -> bool:
    """Does output to `fd` need a relay: is it a pipe or a socket?"""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def copy_lines(fds: list[int], out: int = 1) -> None:
    """Copy whole lines from each of `fds` to `out` until all of them reach end of file.
    A reader of `out` that goes away ends the copy (the runs then lose their records,
    never their exit codes)."""
    poller = select.poll()
    pending = {fd: b"" for fd in fds}
    for fd in fds:
        poller.register(fd, select.POLLIN)
    try:
        while pending:
            for fd, _ in poller.poll():
                _step(fd, pending, poller, out)
    except OSError:
        pass
    for fd in pending:
        os.close(fd)


def _step(fd: int, pending: dict[int, bytes], poller: select.poll, out: int) -> None:
    chunk = os.read(fd, 65536)
    if not chunk:  # this run is done: a last line without its newline still ends one
        rest = pending.pop(fd)
        poller.unregister(fd)
        os.close(fd)
        if rest:
            write_all(out, rest + b"\n")
        return
    data = pending[fd] + chunk
    cut = data.rfind(b"\n") + 1
    if cut == 0 and len(data) > MAX_PENDING:
        data, cut = data + b"\n", len(data) + 1
    if cut:
        write_all(out, data[:cut])
    pending[fd] = data[cut:]
