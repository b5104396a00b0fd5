"""Healthchecks-style pings: `{url}/start?rid=RUN_ID` when a run starts, then `{url}?rid=`
on success or `{url}/fail?rid=` otherwise, with the stderr tail as the body.

Each ping has one deadline for the whole exchange (web.py), and a signal to runjob cuts
it short, so a slow endpoint can neither hold the lock before the child starts nor delay
the end. A failed ping, whatever failed, is logged (`ping.error`, the URL as scheme and
host only: a ping URL is a token) and never changes the exit code.
"""

from __future__ import annotations

from runjob.ops import web
from runjob.records.redact import shown_url
from runjob.run.model import Observer

TYPE_CHECKING = False
if TYPE_CHECKING:
    from runjob.run.model import Outcome, Run

TIMEOUT_S = 10.0  # SPEC section 5: each ping has a 10 s deadline for the whole exchange


class Pinger(Observer):
    def __init__(self, url: str, timeout: float = TIMEOUT_S) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.start_error: str | None = None

    def _ping(self, run: Run, suffix: str, body: bytes | None) -> str | None:
        """Why the ping failed, or None. Never raises: a ping is never why a run fails."""
        stop = getattr(run, "stop", None)
        seen = stop.signum if stop is not None else 0  # a signal that ended the run does not cancel its end ping

        def cancelled() -> bool:
            return stop is not None and stop.signum != seen

        try:
            web.send(
                f"{self.url}{suffix}?rid={run.run_id}",
                body,
                content_type="text/plain; charset=utf-8",
                timeout=self.timeout,
                cancelled=cancelled,
            )
        except Exception as e:  # noqa: BLE001 - web.send says OSError; anything else is contained here all the same
            return str(e) if isinstance(e, OSError) else f"{type(e).__name__} while pinging {shown_url(self.url)}"
        return None

    def _report(self, run: Run, error: str | None) -> None:
        if error:
            run.records.emit(
                "ping.error", f"ping failed: {error}", level="warning", url=shown_url(self.url), error=error
            )

    def start(self, run: Run) -> None:
        # Reported with the end: observers start before the run.start record is written.
        self.start_error = self._ping(run, "/start", None)

    def end(self, run: Run, outcome: Outcome) -> None:
        self._report(run, self.start_error)
        suffix = "" if outcome.status == "success" else "/fail"
        self._report(run, self._ping(run, suffix, outcome.stderr_tail.encode()))
