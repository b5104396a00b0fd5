"""A process identified by pid and start time, so a reused pid is never taken for it.

A pid alone names whichever process has it now: after runjob is SIGKILLed, any unrelated
process that gets the same pid would make a dead run look alive. The start time (field 22
of /proc/PID/stat, in clock ticks since boot) tells them apart. Zombies count as dead.
"""

from __future__ import annotations

import os


def start_time(pid: int) -> int | None:
    """When `pid` started (clock ticks since boot), or None if no live process has it."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] in (b"Z", b"X"):
        return None  # a zombie or dead: its work is over, only the reaper is late
    return int(fields[19])  # field 22; fields[0] is field 3


def alive(pid: int | None, started: int | None) -> bool:
    """Is the process (pid, start time) still running? `started` None (a row written before
    start times were kept): any live process with that pid counts."""
    if not pid or pid < 0:
        return False
    now = start_time(pid)
    if now is None:
        return False
    return started is None or now == started


def holders_of(target: tuple[int, int]) -> list[int]:
    """Pids of the processes (other than us) with the file (st_dev, st_ino) open, found
    through /proc/*/fd: slow on a busy host, so only for rare paths (a busy lock, `locks`)."""
    found = []
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        if _has_open(f"/proc/{name}/fd", target):
            found.append(int(name))
    return sorted(found)


def _has_open(fd_dir: str, target: tuple[int, int]) -> bool:
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return False  # gone, or not ours to look at
    for fd in fds:
        try:
            st = os.stat(f"{fd_dir}/{fd}")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == target:
            return True
    return False
