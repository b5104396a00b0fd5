"""`runjob tick`: start every job due this minute, each as its own detached `runjob NAME`.

Meant for one crontab line, `* * * * * runjob tick`. What was ticked is kept in
`state_dir/tick.json`, written under `tick.lock` before any job is started, so a second
tick in the same minute starts nothing (never twice, at the price of missing the minute
if tick dies between the write and the starts). After downtime each job with `catch_up`
is started once if its last missed time is within `catch_up`, never once per missed minute.

The clock may step either way and never stops later ticks. The state holds the last minute
ticked and the latest one ever ticked ("high"). A tick at or before "high" (the clock went
back by less than BIG_STEP) is in repeated time and, as Debian cron does, starts only
wildcard jobs, since fixed-time ones already ran; a bigger step back forgets "high".
`tick --at T` evaluates the schedules at T and neither reads nor writes that state, beyond
using the last real tick for catch-up: it is a replay, and can never poison later ticks.

The once-a-minute rule is cron's only (timers.py): an `@every` job is due whenever its
interval has passed since a tick last started it (the start is recorded, under the same
lock, before it is started; `--at` reads those starts and records none), an `@at` job at
every tick from its moment until one of its runs has succeeded.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta

from runjob import safefs
from runjob.errors import InternalError
from runjob.locks.lock import exclusive
from runjob.proc.executable import runjob_argv
from runjob.records import relay
from runjob.records.logs import JsonSink, Records, new_run_id, timestamp
from runjob.registry import loader
from runjob.schedule import cron, timers
from runjob.schedule.entry import Entry
from runjob.schedule.scheduled import entries

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from runjob.registry.config import Registry

MINUTE = timedelta(minutes=1)
BIG_STEP = timedelta(hours=3)  # Debian cron's limit between "a time change" and "a new time"


def tick(config_path: str | None, now: float | None = None) -> int:
    """Tick the current minute, or replay the minute of `now` (`--at`) without recording it."""
    registry, plain, others = _load(config_path)
    state_dir = registry.state_dir
    replay = now is not None
    instant = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    minute = datetime.fromtimestamp(instant.timestamp() // 60 * 60, UTC)
    with _tick_lock(state_dir):
        last, high = _state(state_dir)
        already = not replay and last == minute
        if high is not None and minute <= high and (replay or high - minute >= BIG_STEP):
            high = None  # a replay, or a big step back: no repeated time
        repeated = high is not None and minute <= high
        since = last if last is not None and last < minute and not repeated else None
        due = [] if already else _due(plain, minute, since, repeated)
        due += _due_timers(others, instant, state_dir, replay)
        if not replay and not already:
            _save(state_dir, minute, max(high or minute, minute))
    records = Records(JsonSink(), "tick", new_run_id(), os.environ.get("RUNJOB_CORRELATION_ID"))
    claimed = _claimed(due, records)
    pipes: list[int] | None = [] if claimed and relay.needed() else None
    started = [
        _start(registry.path, entry, reason, run_id, pipes)
        for entry, reason, run_id in claimed
        if entry.job.dispatch != "queue"
    ]
    if any(entry.job.dispatch == "queue" for entry, _, _ in claimed):
        from runjob.queue.dispatch import enqueue_due

        started += enqueue_due(registry, [c for c in claimed if c[0].job.dispatch == "queue"], records)
    note = " (this minute was already ticked)" if already else ""
    note += " (repeated time: the clock went back)" if repeated else ""
    records.emit(
        "tick",
        f"tick {minute:%Y-%m-%d %H:%M}: started {len(started)} job(s){note}",
        minute=timestamp(minute.timestamp()),
        started=started,
    )
    if pipes:
        relay.copy_lines(pipes)  # every run's records, each whole, into our one pipe
    return 0


def _load(config_path: str | None) -> tuple[Registry, list[Entry], list[Entry]]:
    """The registry, and its cron entries and @every/@at entries.

    A registry of 10,000 jobs is some 150,000 containers, none of them garbage: the cyclic
    GC would walk them again and again while they are made (a fifth of such a tick's CPU),
    so it waits, and then leaves them out of its later collections for good.
    """
    import gc

    gc.disable()
    try:
        registry = loader.load(config_path, check_schedules=True, cached=True)
        plain, others = _split(entries(registry))
    finally:
        gc.freeze()
        gc.enable()
    return registry, plain, others


Due = list[tuple[Entry, str, datetime]]  # entry, reason, the occurrence (scheduled time) it is for


def _split(scheduled: list[Entry]) -> tuple[list[Entry], list[Entry]]:
    """(cron entries, @every and @at entries), in the registry's order."""
    plain: list[Entry] = []
    others: list[Entry] = []
    for entry in scheduled:
        (plain if timers.kind(entry.job.schedule) == timers.CRON else others).append(entry)
    return plain, others


def _due(scheduled: list[Entry], minute: datetime, since: datetime | None, repeated: bool) -> Due:
    """Due at `minute`: `since` (the last tick, if earlier) bounds catch-up; in repeated time, wildcards only.

    A big registry repeats a few expressions many times: each (expression, zone) is asked once.
    """
    fires: dict[tuple[str, str | None], bool] = {}
    missed: dict[tuple[str, str | None, datetime], datetime | None] = {}
    due: Due = []
    for entry in scheduled:
        expr, zone = entry.job.schedule or "", entry.job.timezone
        if repeated and cron.is_fixed(expr):
            continue
        if (expr, zone) not in fires:
            fires[expr, zone] = cron.fires_at(expr, zone, minute)
        if fires[expr, zone]:
            due.append((entry, "due", minute))
        elif since is not None and entry.job.catch_up and since < minute - MINUTE:
            window = max(since, minute - timedelta(seconds=entry.job.catch_up) - timedelta(seconds=1))
            if (expr, zone, window) not in missed:
                missed[expr, zone, window] = cron.missed(expr, zone, window, minute - MINUTE)
            last = missed[expr, zone, window]
            if last is not None:
                due.append((entry, f"catch-up of {timestamp(last.timestamp())}", last))
    return due


def _due_timers(scheduled: list[Entry], instant: datetime, state_dir: str, replay: bool) -> Due:
    """The @every and @at entries due at `instant`; a real tick records the @every starts."""
    known = timers.starts(state_dir)
    due: Due = []
    for entry in scheduled:
        if timers.kind(entry.job.schedule) == timers.EVERY:
            if timers.every_due(entry, instant, timers.last_start(state_dir, entry, known)):
                due.append((entry, "interval", instant))
        elif instant >= timers.moment(entry.job.schedule or "") and not timers.done(entry.job, state_dir):
            due.append((entry, "one-time", instant))
    if not replay:
        try:
            timers.record_starts(state_dir, [e for e, reason, _ in due if reason == "interval"], instant)
        except OSError as e:
            raise InternalError(f"cannot record the interval starts in {state_dir}: {e.strerror}") from None
    return due


def _claimed(due: Due, records: Records) -> list[tuple[Entry, str, str | None]]:
    """The due runs this host may start, each with its run id if it claimed the occurrence in Redis.

    A lost claim is a `tick.claimed` record naming the winner; an unreachable Redis is a
    warning, and the run starts anyway: its own lock and `lock_unavailable` decide.
    """
    out: list[tuple[Entry, str, str | None]] = []
    for entry, reason, occurrence in due:
        if not entry.job.lock_backend or timers.kind(entry.job.schedule) != timers.CRON:
            out.append((entry, reason, None))  # fleet claims are per cron occurrence
            continue
        from runjob.schedule import claims

        run_id = new_run_id()
        me = {"host": records.common["host"], "run_id": run_id, "tick_pid": os.getpid(), "claimed_at": timestamp()}
        fields: dict[str, Any] = {"params": entry.params, "occurrence": timestamp(occurrence.timestamp())}
        try:
            winner = claims.claim(entry, occurrence, me)
        except claims.Unavailable as e:
            records.emit(
                "tick.claim_unavailable",
                f"{entry.job.name}: cannot claim {occurrence:%Y-%m-%d %H:%M%z}: {e}; starting it, its lock decides",
                level="warning",
                **fields,
                error=str(e),
            )
            out.append((entry, reason, run_id))
            continue
        if winner is None:
            out.append((entry, reason, run_id))
        else:
            records.emit(
                "tick.claimed",
                f"{entry.job.name}: {occurrence:%Y-%m-%d %H:%M%z} was claimed by "
                f"{winner.get('host')} (run {winner.get('run_id')}); not starting it",
                **fields,
                winner_host=winner.get("host"),
                winner_run_id=winner.get("run_id"),
            )
    return out


def _start(
    registry_path: str, entry: Entry, reason: str, run_id: str | None, pipes: list[int] | None
) -> dict[str, Any]:
    """Start one run; with `pipes`, on a pipe of its own whose read end is appended there."""
    argv = [*runjob_argv(), "--config", os.path.abspath(registry_path), *entry.words]
    # The run takes the run id its claim names (see runner.execute), so the claim leads to its records.
    env = dict(os.environ) if run_id is None else dict(os.environ, RUNJOB_CLAIM_RUN_ID=run_id)
    write_end = None
    if pipes is not None:  # a pipe of its own: tick copies its whole records (relay.py)
        read_end, write_end = os.pipe()
        pipes.append(read_end)
    try:
        pid = _spawn(argv, env, write_end)
    finally:
        if write_end is not None:
            os.close(write_end)
    started = {"job": entry.job.name, "params": entry.params, "pid": pid, "reason": reason}
    return started if run_id is None else started | {"run_id": run_id}


def _spawn(argv: list[str], env: dict[str, str], stdout: int | None) -> int:
    """Start a run detached and return its pid, with os.posix_spawn (vfork + exec) rather than
    subprocess, which costs an import and a fork per due job (10 due jobs: about 60 ms here).

    What subprocess did for us is done here: stdin from /dev/null (stdout onto `stdout` when
    given), its own session (a long job never holds tick up, and survives tick's exit), the
    signals Python ignores reset. Every descriptor tick opened is close-on-exec (Python's
    default), so none leaks: not the read ends of the other runs' pipes either.
    """
    import signal

    actions: list[tuple[object, ...]] = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)]
    if stdout is not None:
        actions.append((os.POSIX_SPAWN_DUP2, stdout, 1))
    return os.posix_spawn(
        argv[0], argv, env, file_actions=actions, setsid=True, setsigmask=(), setsigdef=(signal.SIGPIPE, signal.SIGXFSZ)
    )


def _tick_lock(state_dir: str) -> exclusive:
    try:
        safefs.ensure_dir(state_dir, top=True)
        return exclusive(os.path.join(state_dir, "tick.lock"))  # 0600, bounded wait
    except OSError as e:
        raise InternalError(f"cannot use state dir {state_dir}: {e.strerror}") from None


def _state(state_dir: str) -> tuple[datetime | None, datetime | None]:
    """The last minute ticked and the latest one ever ticked (None, None when never, or unreadable)."""
    try:
        with open(os.path.join(state_dir, "tick.json")) as f:
            state = json.load(f)
        last = datetime.fromisoformat(state["last_minute"])
        high = datetime.fromisoformat(state.get("high_minute") or state["last_minute"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None, None
    if last.tzinfo is None or high.tzinfo is None:
        return None, None
    return last, max(last, high)


def _save(state_dir: str, minute: datetime, high: datetime) -> None:
    path = os.path.join(state_dir, "tick.json")
    data = {"last_minute": minute.isoformat(), "high_minute": high.isoformat()}
    try:
        safefs.replace(path, json.dumps(data).encode())
    except OSError as e:
        raise InternalError(f"cannot record the tick in {path}: {e.strerror}") from None
