"""RSS of a process group, through psutil: what `memory_max` is compared with and `status` shows."""

from __future__ import annotations

import os

import psutil


def group_rss(pgids: set[int]) -> dict[int, int]:
    """Bytes of resident memory per process group in `pgids` (every member counted: a worker's
    forks leak too)."""
    totals = dict.fromkeys(pgids, 0)
    for proc in psutil.process_iter():
        try:
            pgid = os.getpgid(proc.pid)
            if pgid in totals:
                totals[pgid] += proc.memory_info().rss
        except (psutil.Error, ProcessLookupError, PermissionError):
            continue  # gone between the listing and the look
    return totals
