"""The run's history rows, written to the journal (journal.py): the runner's observer.

A run writes its `running` row when it starts (unless a live run of its lock key holds it:
the lock's backup, see journal.py), and its finished row when it ends, or one `skipped`
row. It never opens SQLite, except when its end leaves the journal larger than
journal.FOLD_BYTES: then it folds the journal into the store itself, once in some
hundreds of runs, so the file stays small when nobody reads the history.
"""

from __future__ import annotations

import os

from runjob import safefs
from runjob.errors import InternalError
from runjob.locks.lock import exclusive
from runjob.proc import procid
from runjob.records.encoding import encode
from runjob.run.model import Observer
from runjob.store.journal import FOLD_BYTES, KEEP_FIELD, LOCK_WAIT_S, append, live_holder, path_in, read_all

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from runjob.run.model import Outcome, Run


class HistoryRecorder(Observer):
    """The runner observer that writes the run's history rows to the journal."""

    def __init__(self, state_dir: str, keep_s: float) -> None:
        self.state_dir = state_dir
        self.keep_s = keep_s
        self.path = path_in(state_dir)
        self.base: dict[str, Any] | None = None  # one recorder a run (cli/run.observers)

    def start(self, run: Run) -> None:
        """The `running` row, unless a live run on this host holds the lock key (Busy): one
        critical section, so of two runs that each got a lock file (a cleaner removed the
        first's) the second to write sees the first."""
        row = self._row(run, status="running")
        try:
            safefs.ensure_dir(self.state_dir, top=True)
            with exclusive(self.path, LOCK_WAIT_S) as fd:
                other = live_holder(read_all(fd), row["lock_key"], row["host"])
                if other is None:
                    append(fd, [row])
        except OSError as e:
            raise self._error(e) from None
        if other is not None:
            from runjob.locks.lock import Busy  # loaded already: the run holds its lock

            raise Busy(other)

    def skipped(self, run: Run, holder: dict[str, Any]) -> None:
        self._write(self._row(run, status="skipped", ended=run.started, duration_s=0.0))

    def end(self, run: Run, outcome: Outcome) -> None:
        size = self._write(
            self._row(
                run,
                ended=outcome.ended,
                status=outcome.status,
                exit_code=outcome.exit_code,
                attempts=outcome.attempts,
                duration_s=round(outcome.duration, 3),
                stderr_tail=outcome.stderr_tail,
                max_rss_kb=outcome.max_rss_kb,
            )
            | {KEEP_FIELD: self.keep_s}
        )
        if size > FOLD_BYTES:
            self._fold()

    def _fold(self) -> None:
        """Fold the journal into the store now (nobody has read the history for a while).
        The run's row is safe in the journal already: a store that cannot take it now
        (locked, broken) is the next reader's to report, not this run's."""
        from runjob.store import history

        try:
            history.connect(self.state_dir)
        except InternalError:
            pass

    def _write(self, row: dict[str, Any]) -> int:
        try:
            safefs.ensure_dir(self.state_dir, top=True)
            with exclusive(self.path, LOCK_WAIT_S) as fd:
                return append(fd, [row])
        except OSError as e:
            raise self._error(e) from None

    def _error(self, e: OSError) -> InternalError:
        return InternalError(f"cannot write history journal {self.path}: {e.strerror}")

    def _row(self, run: Run, **fields: Any) -> dict[str, Any]:
        """The run's row: what every line of it repeats (made once: its pid's start time is a
        read of /proc), then `fields`."""
        if self.base is None:
            plan = run.plan
            self.base = {
                "run_id": run.run_id,
                "job": plan.name,
                "params": encode(plan.params),
                "correlation_id": run.correlation_id,
                "host": run.records.common["host"],
                "pid": os.getpid(),
                "pid_start": procid.start_time(os.getpid()),
                "lock_key": plan.redact(plan.lock_key),
                "started": run.started,
            }
        return self.base | fields
