"""Retries: attempts, backoff, which failures retry; transient classification."""

from __future__ import annotations

from datetime import datetime

import pytest
from conftest import HOLD, py

from runjob.run.retry import RetryState

FAIL = "import sys; print('attempt', __import__('os').environ['RUNJOB_ATTEMPT']); sys.exit(int(sys.argv[1]))"


def job(rj, code="3", retry="", extra=""):
    rj.write(f"[jobs.r]\ncommand = {py(FAIL, code)}\nretry = {{ {retry} }}\n{extra}\n")


def test_attempts_and_fixed_backoff(rj):
    job(rj, retry='attempts = 3, delay = "300ms"')
    r = rj.run("r")
    assert r.code == 3
    attempts = r.events("run.attempt")
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert [a["retry_in_s"] for a in attempts] == [0.3, 0.3, None]
    assert [o["line"] for o in r.events("run.output")] == ["attempt 1", "attempt 2", "attempt 3"]
    assert [o["attempt"] for o in r.events("run.output")] == [1, 2, 3]
    end = r.one("run.end")
    assert end["attempts"] == 3 and end["status"] == "failure" and len(r.events("run.start")) == 1
    # The backoff is slept: each next attempt's output comes at least the delay after the
    # previous attempt's record (a lower bound that load only makes easier to meet).
    for previous, output in zip(attempts[:-1], r.events("run.output")[1:], strict=True):
        assert stamp(output) - stamp(previous) >= 0.3 - 0.002


def stamp(record: dict) -> float:
    return datetime.fromisoformat(record["timestamp"]).timestamp()


def test_exponential_backoff_is_capped_by_max_delay(rj):
    job(rj, retry='attempts = 4, backoff = "exponential", delay = "100ms", max_delay = "300ms"')
    r = rj.run("r")
    assert [a["retry_in_s"] for a in r.events("run.attempt")] == [0.1, 0.2, 0.3, None]


def test_only_listed_exit_codes_retry(rj):
    job(rj, retry="attempts = 3, on_exit_codes = [75]")
    r = rj.run("r")
    assert r.code == 3 and len(r.events("run.attempt")) == 1
    job(rj, "75", retry="attempts = 3, on_exit_codes = [75]")
    assert len(rj.run("r").events("run.attempt")) == 3


def test_success_stops_retrying(rj):
    code = "import os, sys; sys.exit(0 if os.environ['RUNJOB_ATTEMPT'] == '2' else 1)"
    rj.write(f"[jobs.r]\ncommand = {py(code)}\nretry = {{ attempts = 5 }}\n")
    r = rj.run("r")
    assert r.code == 0 and r.one("run.end")["attempts"] == 2 and r.one("run.end")["status"] == "success"


def test_timeouts_retry_only_with_on_timeout(rj):
    slow = py(HOLD, "started", "never-released")  # holds on until killed
    rj.write(f'[jobs.r]\ncommand = {slow}\ntimeout = "300ms"\nretry = {{ attempts = 2 }}\n')
    r = rj.run("r")
    assert r.code == 124 and len(r.events("run.attempt")) == 1
    rj.write(f'[jobs.r]\ncommand = {slow}\ntimeout = "300ms"\nretry = {{ attempts = 2, on_timeout = true }}\n')
    r = rj.run("r")
    assert r.code == 124 and len(r.events("run.attempt")) == 2 and r.one("run.end")["status"] == "timeout"


def test_no_retry_flag(rj):
    job(rj, retry="attempts = 3")
    assert len(rj.run("run", "r", "--no-retry").events("run.attempt")) == 1


def test_transient_by_exit_code(rj):
    job(rj, "75", extra="transient = { exit_codes = [75] }")
    r = rj.run("r")
    end = r.one("run.end")
    assert r.code == 75 and end["status"] == "transient" and end["level"] == "warning"


def test_transient_by_stderr_pattern(rj):
    code = "import sys; print('SQLSTATE[40001]: Deadlock found', file=sys.stderr); sys.exit(1)"
    rj.write(f'[jobs.t]\ncommand = {py(code)}\ntransient = {{ stderr_patterns = ["SQLSTATE\\\\[40001\\\\]"] }}\n')
    r = rj.run("t")
    assert r.code == 1 and r.one("run.end")["status"] == "transient"
    assert "Deadlock found" in r.one("run.end")["stderr_tail"]


def test_failure_not_matching_is_not_transient(rj):
    code = "import sys; print('disk full', file=sys.stderr); sys.exit(1)"
    rj.write(f'[jobs.t]\ncommand = {py(code)}\ntransient = {{ exit_codes = [75], stderr_patterns = ["Deadlock"] }}\n')
    assert rj.run("t").one("run.end")["status"] == "failure"


POLICY = {
    "attempts": 3,
    "backoff": "exponential",
    "delay": 10.0,
    "max_delay": 25.0,
    "jitter": True,
    "on_exit_codes": [],
    "on_timeout": False,
}


@pytest.mark.parametrize("attempt, base", [(1, 10.0), (2, 20.0), (3, 25.0)])
def test_jitter_stays_between_half_and_all_of_the_wait(attempt, base):
    state = RetryState(POLICY)
    waits = [state.next_delay(attempt) for _ in range(200)]
    assert all(base / 2 <= w <= base for w in waits) and len(set(waits)) > 100
