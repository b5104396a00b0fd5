"""What the report and the dashboard show, computed from the history: one row per job, one
bar per run, and per job its counts, success rate, p50/p95 duration and last failure.

Plain data (dicts of str/float): the template only lays it out. Positions are in a fixed
coordinate space of WIDTH units the page stretches to its width.
"""

from __future__ import annotations

import math
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

WIDTH = 1000.0
MIN_BAR = 0.6  # units: a run of a few milliseconds in a day's timeline must still be seen (and counted)
TICKS = 6  # time labels along the axis: a few, however many runs (labels are aggregated, never per run)
FAILED = ("failure", "timeout", "killed", "crashed")
TAIL_LINES = 20


def duration_text(seconds: float | None) -> str:
    """1.234s, 4m05s, 2h03m, 3d04h: short and exact enough for a tooltip or a table."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.3f}s" if seconds < 10 else f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours < 24 else f"{hours // 24}d{hours % 24:02d}h"


def utc_text(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(t))


def _tick(t: float, span: float) -> str:
    """An axis label: as short as the range allows (the full times are in the header)."""
    if span < 600:
        return time.strftime("%H:%M:%S", time.gmtime(t))
    return time.strftime("%H:%M" if span < 86400 else "%m-%d %H:%M", time.gmtime(t))


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of sorted `values` (None when there are none)."""
    if not values:
        return None
    return values[max(0, math.ceil(p / 100 * len(values)) - 1)]


def build(runs: list[dict[str, Any]], now: float) -> dict[str, Any]:
    """The page's data from history rows (history.row_dict), any order. The axis spans the
    runs themselves (first start to last end), not the whole --since range: runs of the last
    minute in a day's range would all be one pile at the right edge."""
    lo = min((float(r["started"]) for r in runs), default=now - 3600)
    span = max(max((_end(r, now) for r in runs), default=now) - lo, 1e-3)
    by_job: dict[str, list[dict[str, Any]]] = {}
    for run in sorted(runs, key=lambda r: r["started"]):
        by_job.setdefault(run["job"], []).append(run)
    jobs = [_job(name, rows, lo, span, now) for name, rows in sorted(by_job.items())]
    ticks = [{"x": WIDTH * i / TICKS, "label": _tick(lo + span * i / TICKS, span)} for i in range(TICKS + 1)]
    return {
        "jobs": jobs,
        "ticks": ticks,
        "width": WIDTH,
        "from": utc_text(lo),
        "to": utc_text(lo + span),
        "runs": len(runs),
        "generated": utc_text(now),
    }


def _end(run: dict[str, Any], now: float) -> float:
    if run["ended"]:
        return float(run["ended"])
    return now if run["status"] == "running" else float(run["started"])


def _job(name: str, rows: list[dict[str, Any]], lo: float, span: float, now: float) -> dict[str, Any]:
    bars = [_bar(r, lo, span, now) for r in rows]
    ran = [r for r in rows if r["status"] not in ("skipped", "running")]
    durations = sorted(r["duration_s"] for r in ran if r["duration_s"] is not None)
    ok = sum(r["status"] == "success" for r in ran)
    failures = [r for r in ran if r["status"] in FAILED]
    return {
        "name": name,
        "bars": bars,
        "runs": len(rows),
        "finished": len(ran),
        "success_rate": f"{100 * ok / len(ran):.1f}%" if ran else "-",
        "p50": duration_text(percentile(durations, 50)),
        "p95": duration_text(percentile(durations, 95)),
        "last_failure": _failure(failures[-1]) if failures else None,
    }


def _bar(run: dict[str, Any], lo: float, span: float, now: float) -> dict[str, Any]:
    start = float(run["started"])
    x = max(0.0, (start - lo) / span * WIDTH)
    width = max(MIN_BAR, (_end(run, now) - start) / span * WIDTH)
    duration = (
        run["duration_s"] if run["duration_s"] is not None else (now - start if run["status"] == "running" else None)
    )
    exit_code = "-" if run["exit_code"] is None else str(run["exit_code"])
    return {
        "run_id": run["run_id"],
        "status": run["status"],
        "x": f"{min(x, WIDTH - MIN_BAR):.2f}",
        "w": f"{min(width, WIDTH - x):.2f}" if x < WIDTH - MIN_BAR else f"{MIN_BAR}",
        "tip": f"{run['run_id']} · {run['status']} · exit {exit_code} · {duration_text(duration)} · {utc_text(start)}",
    }


def _failure(run: dict[str, Any]) -> dict[str, Any]:
    tail = (run["stderr_tail"] or "").splitlines()[-TAIL_LINES:]
    return {
        "run_id": run["run_id"],
        "status": run["status"],
        "exit_code": run["exit_code"],
        "at": utc_text(float(run["started"])),
        "stderr_tail": "\n".join(tail),
    }
