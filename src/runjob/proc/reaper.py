"""The children of runjob as the kernel hands them back: the job's exit status, the orphans
a PID 1 must reap, and whether anything alive is left in the job's process group.

Kept apart from process.py (the supervise loop) because these are the rules that differ
by where runjob runs: as PID 1 of a container every orphan is re-parented to us, and a
zombie (dead, waiting for a reaper) must never count as a live member of the group.
"""

from __future__ import annotations

import os

LOST = -1  # a wait status no real one equals: the child's status could not be had


def reap(pid: int) -> tuple[int, int] | None:
    try:
        got, wait_status, usage = os.wait4(pid, os.WNOHANG)
    except ChildProcessError:  # someone else reaped it (SIGCHLD ignored): we do not know how it ended
        return (LOST, 0)
    return None if got == 0 else (wait_status, usage.ru_maxrss)


def reap_orphans(child: int) -> None:
    """As PID 1, reap every exited process re-parented to us, but never `child` (the job):
    its status is ours to read with wait4. WNOWAIT peeks at who is waiting first."""
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if info is None or info.si_pid == child:
            return  # nothing left, or the job itself exited: the supervise loop reaps it next
        try:
            os.waitpid(info.si_pid, os.WNOHANG)
        except ChildProcessError:
            pass


def killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def wait_gone(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def group_alive(pgid: int) -> bool:
    """Is any member of the group alive? Zombies do not count: a zombie waiting for a parent
    that never reaps it (or for us, as PID 1) must not hold the run up until kill_grace."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _live_member(pgid)


def _live_member(pgid: int) -> bool:
    """A non-zombie process in group `pgid`, from /proc (True if /proc cannot tell)."""
    try:
        pids = [d for d in os.listdir("/proc") if d.isdigit()]
    except OSError:
        return True
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rpartition(b")")[2].split()
        except OSError:
            continue  # gone meanwhile
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != b"Z":
            return True
    return False
