"""Prometheus metrics for node_exporter's textfile collector, rewritten after each run.

Derived from the history store, not counted in memory, so concurrent runs never lose
counts; the query and the atomic rename (temp file + rename) happen under a lock, so a
slower writer never replaces a newer snapshot with an older one. Written by hand rather
than with prometheus_client: five gauge families in a fixed text format do not need a
registry, and this keeps the dependency list short. `runjob_runs_total` counts the runs
in the retained history (history_keep), so it drops when old rows are purged, which
Prometheus' rate() reads as a counter reset.
"""

from __future__ import annotations

import os

from runjob import safefs
from runjob.errors import RunjobError
from runjob.locks.lock import exclusive
from runjob.run.model import Observer
from runjob.store import history

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3
    from typing import Any

    from runjob.run.model import Outcome, Run

FAMILIES = {
    "runjob_last_start_timestamp_seconds": "Start time of the job's last run.",
    "runjob_last_success_timestamp_seconds": "End time of the job's last successful run.",
    "runjob_last_duration_seconds": "Duration of the job's last finished run.",
    "runjob_last_exit_code": "Exit code of the job's last finished run.",
    "runjob_runs_total": "Runs in the retained history, by status.",
}


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(job: str, params: str | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """`job` and one label per param of the run (SPEC 5: `supplier="acme"`), so each job
    instance is its own series; a param named like a label of ours gets a `param_` prefix."""
    import json  # after the run, never before the child starts

    decoded = json.loads(params or "{}")
    labels = {"job": job}
    for name, value in decoded.items():
        labels["param_" + name if name in ("job", "status") or name.startswith("__") else name] = str(value)
    return labels | (extra or {})


def collect(db: sqlite3.Connection) -> dict[str, list[tuple[dict[str, str], float]]]:
    samples: dict[str, list[tuple[dict[str, str], float]]] = {name: [] for name in FAMILIES}
    queries = {
        "runjob_last_start_timestamp_seconds": (
            "SELECT job, params, MAX(started) FROM runs WHERE status != 'skipped' GROUP BY job, params"
        ),
        "runjob_last_success_timestamp_seconds": (
            "SELECT job, params, MAX(ended) FROM runs WHERE status = 'success' GROUP BY job, params"
        ),
    }
    for name, sql in queries.items():
        samples[name] = [(_labels(job, params), value) for job, params, value in db.execute(sql)]
    # SQLite's bare columns come from the row holding MAX(started): the last finished run.
    last = (
        "SELECT job, params, MAX(started), duration_s, exit_code FROM runs WHERE ended IS NOT NULL "
        "AND status != 'skipped' GROUP BY job, params"
    )
    for job, params, _, duration, code in db.execute(last):
        samples["runjob_last_duration_seconds"].append((_labels(job, params), duration or 0.0))
        samples["runjob_last_exit_code"].append((_labels(job, params), code if code is not None else -1))
    counts = "SELECT job, params, status, COUNT(*) FROM runs GROUP BY job, params, status"
    for job, params, status, count in db.execute(counts):
        samples["runjob_runs_total"].append((_labels(job, params, {"status": status}), count))
    return samples


def render(samples: dict[str, list[tuple[dict[str, str], float]]]) -> str:
    lines = []
    for name, help_text in FAMILIES.items():
        kind = "counter" if name.endswith("_total") else "gauge"
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for labels, value in sorted(samples[name], key=lambda s: sorted(s[0].items())):
            text = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            lines.append(f"{name}{{{text}}} {value:g}" if isinstance(value, int) else f"{name}{{{text}}} {value!r}")
    return "\n".join(lines) + "\n"


def write(path: str, state_dir: str) -> None:
    """Rewrite `path` atomically from the history in `state_dir`."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with exclusive(path + ".lock"):
        db = history.connect(state_dir)
        try:
            text = render(collect(db))
        finally:
            db.close()
        if os.path.exists(os.path.join(state_dir, "queue.sqlite3")):
            from runjob.queue.metrics import render_queue

            text += render_queue(state_dir)
        safefs.replace(path, text.encode(), mode=0o640)  # an existing file keeps its mode (0644 for an exporter)


class Metrics(Observer):
    """The runner observer: rewrite the metrics file after every run (and skip)."""

    def __init__(self, path: str, state_dir: str) -> None:
        self.path = path
        self.state_dir = state_dir

    def skipped(self, run: Run, holder: dict[str, Any]) -> None:
        self._write(run)

    def end(self, run: Run, outcome: Outcome) -> None:
        self._write(run)

    def _write(self, run: Run) -> None:
        try:
            write(self.path, self.state_dir)
        except (OSError, RunjobError) as e:  # RunjobError: a symlink, or the lock held too long
            run.records.emit("metrics.error", f"cannot write metrics {self.path}: {e}", level="error", error=str(e))
