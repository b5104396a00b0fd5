"""A run, start to end: lock, attempts with retries, records, and the after-run steps.

After-run steps (history, notifications, pings, metrics) are observers (model.py):
`start`, `skipped`, `warn` and `end`. `start` runs before the child does, so an
observer that cannot work (history store unwritable) stops the run with exit 125
before anything is executed; failures in the others never change the exit code.
"""

from __future__ import annotations

import os
import time

from runjob.errors import RunjobError
from runjob.locks.lock import Busy
from runjob.proc import process, procid
from runjob.records.logs import Records, new_run_id, timestamp
from runjob.records.output import StreamHandler
from runjob.run import locking
from runjob.run.model import Outcome, Run
from runjob.run.retry import RetryState

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
    from typing import Any

    from runjob.locks.protocol import Lock
    from runjob.records.logs import Sink
    from runjob.run.model import Observer, Status
    from runjob.run.plan import Plan
else:
    from runjob.proc.process import signal  # _signal, without the enums: see process.py


LEVELS = {"success": "info", "transient": "warning"}


def execute(plan: Plan, sink: Sink, observers: list[Observer]) -> int:
    """Run `plan` and return runjob's exit code."""
    records = Records(
        sink, plan.name, _claimed_run_id() or new_run_id(), os.environ.get("RUNJOB_CORRELATION_ID"), plan.secret_values
    )
    run = Run(plan, records)
    holder = {
        "pid": os.getpid(),
        "pid_start": procid.start_time(os.getpid()),
        "run_id": run.run_id,
        "job": plan.name,
        "host": records.common["host"],
        "since": run.started_at,
    }
    stop = process.Stop()
    run.stop = stop
    previous = _install_signals(stop)  # before the lock: a signal while waiting for it ends the run too
    try:
        held = locking.take(run, holder, stop)
        if stop.signum:
            return _killed_waiting(run, observers, stop)
        if held is None:
            return _busy(run, observers)
        return _locked(run, held, stop, observers, holder)
    except locking.NotRun as e:
        return e.exit_code
    finally:
        _restore_signals(stop, previous)


def _locked(run: Run, held: Lock, stop: process.Stop, observers: list[Observer], holder: dict[str, Any]) -> int:
    """The run once its lock is held: records, attempts, after-run steps; the lock released last."""
    try:
        held.set_holder(**holder)
        watch = locking.keep(run, held, stop, _duration_watch(run, observers))
        try:
            for observer in observers:
                observer.start(run)
        except Busy as e:  # history: a live run holds this key (its lock file was removed)
            return _busy(run, observers, e.holder)
        _start_record(run)
        outcome = _attempts(run, held, stop, watch)
        stop.run_notices()  # e.g. a lock lost in the last moments of the run
        outcome.record = _end_record(run, outcome)
        _check_too_fast(run, outcome, observers)
        for observer in observers:
            _safely(observer.end, run, outcome)
        return outcome.exit_code
    finally:
        held.release()  # before the signals are restored: it joins a Redis renewal thread that may still
        # write to the wakeup pipe


def _killed_waiting(run: Run, observers: list[Observer], stop: process.Stop) -> int:
    """A stop signal before the run got its lock: run.end (killed) and a history row all the same."""
    plan = run.plan
    why = f"while waiting for lock {plan.lock_key}"  # the run never started: observers see only its end
    outcome = Outcome("killed", 128 + stop.signum, 0, run.started_mono, "", 0, why)
    outcome.record = _end_record(run, outcome)
    for observer in observers:
        _safely(observer.end, run, outcome)
    return outcome.exit_code


def _claimed_run_id() -> str | None:
    """The run id `tick` claimed this occurrence under (popped: the child and its runjobs never see it)."""
    given = os.environ.pop("RUNJOB_CLAIM_RUN_ID", "")
    return given if len(given) == 36 and all(c in "0123456789abcdef-" for c in given) else None


def _busy(run: Run, observers: list[Observer], holder: dict[str, Any] | None = None) -> int:
    """The lock is held by another run: lock.busy, and the observers told nothing ran."""
    code, holder = locking.busy(run, holder)
    for observer in observers:
        _safely(observer.skipped, run, holder)
    return code


def _start_record(run: Run) -> None:
    plan = run.plan
    run.records.emit(
        "run.start",
        f"{plan.name} started",
        command=[plan.redact(a) for a in plan.argv],
        params=plan.params,
        lock_key=plan.lock_key,
        timeout_s=plan.timeout,
        attempts_max=plan.retry["attempts"],
        schedule=plan.job.schedule,
    )
    if not plan.job.enabled:  # asked for by name: run it, but say that it is switched off
        run.records.emit(
            "run.disabled",
            f"{plan.name} has enabled = false: it is never due, run only because it was asked for by name",
            level="warning",
        )


def _attempts(run: Run, held: Lock, stop: process.Stop, watch: process.Watch) -> Outcome:
    """Each attempt in turn until one succeeds, the retry policy gives up, or a stop signal comes."""
    plan = run.plan
    retry = RetryState(plan.retry)
    patterns = _compile(plan.job.transient["stderr_patterns"])
    env = child_env(plan, run.run_id, run.correlation_id)
    inherit = (held.fd,) if held.fd >= 0 else ()  # a file lock stays held while the child lives
    command = process.Command(plan.argv, plan.cwd, env, plan.output, inherit, plan.timeout, plan.kill_grace)
    attempt, max_rss = 0, 0
    while True:
        attempt += 1
        env["RUNJOB_ATTEMPT"] = str(attempt)
        handlers = _handlers(run, attempt, patterns)
        result = process.run(command, handlers, stop, watch)
        max_rss = max(max_rss, result.max_rss_kb)
        again = not result.error and not stop.signum and retry.should_retry(attempt, result.status, result.exit_code)
        delay = retry.next_delay(attempt) if again else None
        _attempt_record(run, attempt, result, delay)
        if delay is None or not _sleep(delay, stop, watch):
            return _outcome(run, attempt, result, handlers[1], stop, max_rss)


def _handlers(run: Run, attempt: int, patterns: list[Any]) -> tuple[StreamHandler, StreamHandler]:
    """The child's stdout and stderr handlers for one attempt (stderr_patterns on stderr only)."""
    plan = run.plan
    records = run.records
    out = StreamHandler("stdout", plan.output, records.sink, records, attempt, plan.secret_values, None)
    err = StreamHandler("stderr", plan.output, records.sink, records, attempt, plan.secret_values, patterns)
    return out, err


def _outcome(
    run: Run, attempt: int, result: process.Result, stderr: StreamHandler, stop: process.Stop, max_rss: int
) -> Outcome:
    """How the run ended after its last attempt: a failure matching `transient` is transient; a stop
    signal makes it killed (128 + the signal)."""
    status: Status = result.status  # type: ignore[assignment]  # process.Result's statuses are Status values
    if status == "failure" and _is_transient(run.plan, result.exit_code, stderr.matched):
        status = "transient"
    error, code = result.error, result.exit_code
    if stop.signum:
        status, code, error = "killed", 128 + stop.signum, stop.reason or error
    return Outcome(status, code, attempt, run.started_mono, stderr.tail_text(), max_rss, error)


def child_env(plan: Plan, run_id: str, correlation_id: str) -> dict[str, str]:
    """What the child gets: the environment runjob was given (main.py took Python's own
    locale coercion back out of it), the job's env, and the RUNJOB_* ids (RUNJOB_ATTEMPT
    is added per attempt)."""
    env = {k: v for k, v in os.environ.items() if k not in plan.withheld} | plan.env
    return env | {"RUNJOB_RUN_ID": run_id, "RUNJOB_JOB": plan.name, "RUNJOB_CORRELATION_ID": correlation_id}


def _compile(patterns: list[str]) -> list[Any]:
    if not patterns:
        return []
    import re  # only jobs with stderr patterns pay for it

    # Matched per line (output.StreamHandler), and MULTILINE so ^ and $ mean a line's
    # start and end whatever the pipe's chunking put around it.
    return [re.compile(p, re.MULTILINE) for p in patterns]


def _is_transient(plan: Plan, exit_code: int, stderr_matched: bool) -> bool:
    return exit_code in plan.job.transient["exit_codes"] or stderr_matched


def _attempt_record(run: Run, attempt: int, result: process.Result, delay: float | None) -> None:
    if result.status == "success":
        message = f"attempt {attempt} succeeded"
    else:
        message = f"attempt {attempt} ended: {result.error or result.status} (exit code {result.exit_code})"
        message += f"; retrying in {delay:.1f}s" if delay is not None else ""
    run.records.emit(
        "run.attempt",
        message,
        level="info" if result.status == "success" else "warning",
        attempt=attempt,
        exit_code=result.exit_code,
        duration_s=round(result.duration, 3),
        status=result.status,
        retry_in_s=None if delay is None else round(delay, 3),
    )


def _end_record(run: Run, outcome: Outcome) -> dict[str, Any]:
    plan = run.plan
    return run.records.emit(
        "run.end",
        _end_message(plan.name, outcome),
        level=LEVELS.get(outcome.status, "error"),
        status=outcome.status,
        exit_code=outcome.exit_code,
        attempts=outcome.attempts,
        started_at=run.started_at,
        ended_at=timestamp(outcome.ended),
        duration_s=round(outcome.duration, 3),
        stderr_tail=outcome.stderr_tail,
        max_rss_kb=outcome.max_rss_kb,
        **({"error": outcome.error} if outcome.error else {}),
    )


def _end_message(name: str, o: Outcome) -> str:
    tries = f" after {o.attempts} attempts" if o.attempts > 1 else ""
    if o.status == "success":
        return f"{name} succeeded in {o.duration:.3f}s{tries}"
    if o.status == "killed":
        why = f" ({o.error})" if o.error else ""
        if o.attempts == 0:
            return f"{name} was killed by signal {o.exit_code - 128} {o.error}"
        return f"{name} was killed by signal {o.exit_code - 128}{why}{tries}"
    if o.error:
        return f"{name} failed: {o.error}"
    if o.status == "timeout":
        return f"{name} timed out{tries} (exit code 124)"
    return f"{name} {'failed transiently' if o.status == 'transient' else 'failed'} with exit code {o.exit_code}{tries}"


def _sleep(seconds: float, stop: process.Stop, watch: process.Watch) -> bool:
    """Wait between attempts; False if a stop signal came meanwhile."""
    end = time.monotonic() + seconds
    while not stop.signum and (left := end - time.monotonic()) > 0:
        stop.run_notices()
        watch.check(time.monotonic())
        time.sleep(min(left, 0.1))
    return not stop.signum


def _duration_record(run: Run, duration: float, message: str) -> dict[str, Any]:
    bounds = run.plan.job.expected_duration
    return run.records.emit(
        "run.duration",
        message,
        level="warning",
        duration_s=round(duration, 3),
        expected_min_s=bounds["min"],
        expected_max_s=bounds["max"],
    )


def _duration_watch(run: Run, observers: list[Observer]) -> process.Watch:
    """An alarm for a run still going past expected_duration.max."""
    limit = run.plan.job.expected_duration["max"]

    def overrun() -> None:
        assert limit is not None  # the watch is only armed with a limit
        message = f"{run.plan.name} still running after {limit:g}s (expected at most that)"
        _warn(observers, run, _duration_record(run, limit, message))

    return process.Watch(None if limit is None else run.started_mono + limit, overrun)


def _check_too_fast(run: Run, outcome: Outcome, observers: list[Observer]) -> None:
    """A success faster than expected_duration.min: the job may have silently done nothing."""
    limit = run.plan.job.expected_duration["min"]
    if limit is not None and outcome.status == "success" and outcome.duration < limit:
        message = f"{run.plan.name} finished in {outcome.duration:.3f}s, faster than the expected {limit:g}s"
        _warn(observers, run, _duration_record(run, outcome.duration, message))


def _warn(observers: list[Observer], run: Run, record: dict[str, Any]) -> None:
    for observer in observers:
        _safely(observer.warn, run, record)


def _safely(step: Any, *args: Any) -> None:
    """An after-run step that fails is reported and never changes the exit code."""
    try:
        step(*args)
    except RunjobError as e:
        os.write(2, f"runjob: {e}\n".encode())
    except Exception as e:  # noqa: BLE001 - contained at the boundary: an after-run step never takes the run down
        os.write(2, f"runjob: {type(e).__name__} in an after-run step: {str(e)[:200]}\n".encode())


def _install_signals(stop: process.Stop) -> tuple[dict[int, Any], int]:
    """Our handlers for SIGTERM/INT/HUP, and a wakeup pipe so poll() notices them at once."""
    stop.wake_read, stop.wake_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    old_wakeup = signal.set_wakeup_fd(stop.wake_fd, warn_on_full_buffer=False)
    handlers: dict[int, Any] = {s: signal.signal(s, stop.handle) for s in process.STOP_SIGNALS}
    if stop.reaper:  # as PID 1: an orphan's exit wakes the supervise loop, which reaps it
        handlers[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, _wake_only)
    return handlers, old_wakeup


def _wake_only(signum: int, frame: object) -> None:
    """A handler whose only work is the wakeup fd's byte, written by Python's C handler."""


def _restore_signals(stop: process.Stop, previous: tuple[dict[int, Any], int]) -> None:
    handlers, old_wakeup = previous
    for s, h in handlers.items():
        signal.signal(s, h)
    signal.set_wakeup_fd(old_wakeup)
    fds, stop.wake_read, stop.wake_fd = (stop.wake_read, stop.wake_fd), -1, -1  # a late notify() gets EBADF
    for fd in fds:
        os.close(fd)
