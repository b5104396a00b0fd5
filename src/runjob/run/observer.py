"""The after-run steps' interface: history, notifications, pings and metrics subclass this.

`start` runs before the run.start record and before the child: raising a RunjobError
there stops the run (exit 125 for an unwritable history). `end`, `skipped` and `warn`
failures are reported and never change the exit code.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from runjob.run.runner import Outcome, Run


class Observer:
    def start(self, run: Run) -> None:
        """The run got its lock and is about to start."""

    def skipped(self, run: Run, holder: dict[str, Any]) -> None:
        """The lock was busy; nothing ran."""

    def warn(self, run: Run, record: dict[str, Any]) -> None:
        """A warning worth telling owners about (run.duration), while the run goes on."""

    def end(self, run: Run, outcome: Outcome) -> None:
        """The run ended; `outcome.record` is its run.end record."""
