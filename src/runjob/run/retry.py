"""The retry policy of one run (SPEC section 5): when to try again, and how long to wait."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class RetryState:
    def __init__(self, policy: dict[str, Any]) -> None:
        self.policy = policy
        self.attempts: int = policy["attempts"]

    def should_retry(self, attempt: int, status: str, exit_code: int) -> bool:
        """Is another attempt due after attempt number `attempt` ended so?"""
        if status == "success" or attempt >= self.attempts:
            return False
        if status == "timeout":
            return bool(self.policy["on_timeout"])
        codes = self.policy["on_exit_codes"]
        return exit_code in codes if codes else True  # a crash by signal counts as its 128+N code

    def next_delay(self, attempt: int) -> float:
        """Seconds to wait after attempt number `attempt` (1-based) failed."""
        delay: float = self.policy["delay"]
        if self.policy["backoff"] == "exponential":
            delay *= 2 ** (attempt - 1)
        delay = min(delay, self.policy["max_delay"])
        if self.policy["jitter"] and delay > 0:
            import random

            delay = random.uniform(delay / 2, delay)  # "equal jitter": spread out, never near zero
        return delay
