"""Queue gauges for metrics_file: pending depth per job and priority, and the dead count.

Read from the state dir's `queue.sqlite3` only (a Redis queue would put a network round
trip into every run's metrics write); the caller checks the file exists.
"""

from __future__ import annotations

import os
import sqlite3

from runjob.queue.sqlite_store import FILENAME


def render_queue(state_dir: str) -> str:
    try:
        db = sqlite3.connect(f"file:{os.path.join(state_dir, FILENAME)}?mode=ro", uri=True, timeout=5)
        try:
            depth = db.execute(
                "SELECT job, priority, COUNT(*) FROM entries WHERE state = 'pending' "
                "GROUP BY job, priority ORDER BY job, priority"
            ).fetchall()
            dead = db.execute("SELECT COUNT(*) FROM entries WHERE state = 'dead'").fetchall()[0][0]
        finally:
            db.close()
    except sqlite3.Error:
        return ""
    lines = ["# HELP runjob_queue_depth Pending queue entries, by job and priority.", "# TYPE runjob_queue_depth gauge"]
    lines += [f'runjob_queue_depth{{job="{job}",priority="{prio}"}} {count}' for job, prio, count in depth]
    lines += [
        "# HELP runjob_queue_dead Dead-letter queue entries.",
        "# TYPE runjob_queue_dead gauge",
        f"runjob_queue_dead {dead}",
    ]
    return "\n".join(lines) + "\n"
