"""What a run is, as the runner and its after-run steps see it: `Run` (the run in progress),
`Outcome` (how it ended) and `Observer`, the interface history, notifications, pings and
metrics subclass.

`start` runs before the run.start record and before the child: raising a RunjobError
there stops the run (exit 125 for an unwritable history). `end`, `skipped` and `warn`
failures are reported and never change the exit code.
"""

from __future__ import annotations

import time

from runjob.records.encoding import timestamp

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Literal

    from runjob.proc import process
    from runjob.records.logs import Records
    from runjob.run.plan import Plan

    # How a run ended (run.end's `status`, the history's row). An attempt's own status
    # (process.Result, run.attempt) is one of success, failure, timeout.
    Status = Literal["success", "failure", "transient", "timeout", "killed"]
    # What the history may also say of a run: still going, its runjob gone, or never started.
    RowStatus = Literal[Status, "running", "crashed", "skipped"]


# The values of Status and RowStatus below, for checking what a user typed (`history --status`).
STATUSES = ("success", "failure", "transient", "timeout", "killed")
ROW_STATUSES = ("running", "crashed", *STATUSES, "skipped")


class Run:
    """What observers see of the run in progress."""

    def __init__(self, plan: Plan, records: Records) -> None:
        self.plan = plan
        self.records = records
        self.run_id: str = records.common["run_id"]
        self.correlation_id: str = records.common["correlation_id"]
        self.started = time.time()
        self.started_at = timestamp(self.started)
        self.started_mono = time.monotonic()
        self.stop: process.Stop | None = None  # a signal to runjob shows here; network steps give up on it


class Outcome:
    """How the run ended: the fields of the run.end record."""

    def __init__(
        self,
        status: Status,
        exit_code: int,
        attempts: int,
        started: float,
        stderr_tail: str,
        max_rss_kb: int,
        error: str = "",
    ) -> None:
        self.status = status
        self.exit_code = exit_code
        self.attempts = attempts
        self.ended = time.time()
        self.duration = time.monotonic() - started  # `started` is monotonic: a clock step changes no duration
        self.stderr_tail = stderr_tail
        self.max_rss_kb = max_rss_kb
        self.error = error
        self.record: dict[str, Any] = {}  # the run.end record, once written


class Observer:
    def start(self, run: Run) -> None:
        """The run got its lock and is about to start."""

    def skipped(self, run: Run, holder: dict[str, Any]) -> None:
        """The lock was busy; nothing ran."""

    def warn(self, run: Run, record: dict[str, Any]) -> None:
        """A warning worth telling owners about (run.duration), while the run goes on."""

    def end(self, run: Run, outcome: Outcome) -> None:
        """The run ended; `outcome.record` is its run.end record."""
