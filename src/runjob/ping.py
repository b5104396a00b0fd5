"""Healthchecks-style pings: `{url}/start?rid=RUN_ID` when a run starts, then `{url}?rid=`
on success or `{url}/fail?rid=` otherwise, with the stderr tail as the body.
A failed ping is logged (`ping.error`) and never changes the exit code.
"""

from __future__ import annotations

from runjob import web

from runjob.observer import Observer

TYPE_CHECKING = False
if TYPE_CHECKING:
    from runjob.runner import Outcome, Run

TIMEOUT_S = 5.0  # the start ping delays the job: keep it short


class Pinger(Observer):
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.start_error: tuple[str, str] | None = None

    def _ping(self, run: Run, suffix: str, body: bytes | None) -> tuple[str, str] | None:
        url = f"{self.url}{suffix}?rid={run.run_id}"
        try:
            web.send(url, body, content_type="text/plain; charset=utf-8", timeout=TIMEOUT_S)
        except OSError as e:
            return url, str(e)
        return None

    def _report(self, run: Run, failed: tuple[str, str] | None) -> None:
        if failed:
            url, error = failed
            run.records.emit("ping.error", f"ping failed: {error}", level="warning", url=url, error=error)

    def start(self, run: Run) -> None:
        # Reported with the end: observers start before the run.start record is written.
        self.start_error = self._ping(run, "/start", None)

    def end(self, run: Run, outcome: Outcome) -> None:
        self._report(run, self.start_error)
        suffix = "" if outcome.status == "success" else "/fail"
        self._report(run, self._ping(run, suffix, outcome.stderr_tail.encode()))
