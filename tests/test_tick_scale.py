"""`tick` over a big registry (10,000 jobs) dispatching to the queue, and the caches that make it fast.

Every assertion is on what tick did (which runs it enqueued, what the queue holds), never on
how long it took: the figures are bench/run.py's. Schedules are asked through `tick --at`.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from conftest import PY, RUNJOB, Env, q
from hypothesis import given, settings
from hypothesis import strategies as st

AT = "2026-11-23T03:00:00+00:00"  # a Monday; Berlin is UTC+1, New York UTC-5, Sao Paulo UTC-3
MINUTES = {"03:00": AT, "03:01": "2026-11-23T03:01:00+00:00", "08:00": "2026-11-23T08:00:00+00:00"}
# (schedule, timezone or None, the minutes of MINUTES it is due at): one of them per fifty jobs.
KINDS = [
    ("0 3 * * *", None, {"03:00"}),
    ("1 3 * * *", None, {"03:01"}),
    ("*/20 3 * * *", None, {"03:00"}),
    ("0 3 24 11 *", None, set()),
    ("0 */3 * * *", None, {"03:00"}),
    ("0 3 * * TUE", None, set()),
    ("0 3 23 11 *", None, {"03:00"}),
    ("0 3 * * *", "America/New_York", {"08:00"}),
    ("0 3 * * MON", None, {"03:00"}),
    ("0 3 * * *", "Europe/Berlin", set()),
    ("0 4 * * *", "Europe/Berlin", {"03:00"}),
    ("59 2 * * *", None, set()),
    ("@daily", "America/Sao_Paulo", {"03:00"}),
    ("0 3 * 12 *", None, set()),
    ("0 3 * * 1-5", None, {"03:00"}),
    ("@hourly", "Asia/Kolkata", set()),
]
HOURS = [h for h in range(24) if h != 3]


def big_registry(rj: Env, count: int = 10_000) -> dict[str, set[str]]:
    """`count` jobs, one in fifty of a kind above, the rest spread over ~1,400 distinct daily
    expressions (never at 03:xx), plus a disabled, a manual and a two-instance job; returns
    each run (`job k=v`) that is due at one of MINUTES, with those minutes."""
    parts = [f'[defaults]\nstate_dir = {q(str(rj.state))}\ndispatch = "queue"\n']
    due: dict[str, set[str]] = {}
    for i in range(count):
        if i % 50 == 0:
            expr, zone, when = KINDS[i // 50 % len(KINDS)]
        else:
            expr, zone = f"{i % 60} {HOURS[i // 60 % 23]} * * *", None
            when = {"08:00"} if i % 60 == 0 and HOURS[i // 60 % 23] == 8 else set()
        if when:
            due[f"j{i}"] = when
        zone_line = f'timezone = "{zone}"\n' if zone else ""
        parts.append(f'[jobs.j{i}]\ncommand = ["true"]\nschedule = "{expr}"\n{zone_line}')
    parts.append('[jobs.off]\ncommand = ["true"]\nschedule = "0 3 * * *"\nenabled = false\n')
    parts.append('[jobs.byhand]\ncommand = ["true"]\nschedule = "@manual"\n')
    parts.append(
        '[jobs.pair]\ncommand = ["true", "{s}"]\nschedule = "0 3 * * *"\n'
        'instances = [{ s = "a" }, { s = "b" }]\nparams = { s = { pattern = "[a-z]" } }\n'
    )
    rj.write("".join(parts))
    return due | {"pair s=a": {"03:00"}, "pair s=b": {"03:00"}}


def queued(rj: Env) -> list[str]:
    """The pending entries, each as `job k=v ...`."""
    r = rj.run("queue", "--json")
    assert r.code == 0, r.err
    entries = json.loads(r.out)["entries"]
    return sorted(" ".join([e["job"], *(f"{k}={v}" for k, v in e["params"].items())]) for e in entries)


def ticked(rj: Env, at: str) -> list[str]:
    r = rj.run("tick", "--at", at)
    assert r.code == 0, r.err
    started = r.one("tick")["started"]
    assert sorted(s["queue_id"] for s in started) == sorted(r["queue_id"] for r in r.events("queue.enqueued"))
    return sorted(" ".join([s["job"], *(f"{k}={v}" for k, v in s["params"].items())]) for s in started)


def test_tick_over_10000_jobs_enqueues_exactly_the_due_ones(rj):
    due = big_registry(rj)
    expected = {label: sorted(run for run, when in due.items() if label in when) for label in MINUTES}
    # 100 jobs and the two instances of `pair` at 03:00
    assert len(expected["03:00"]) == 102 and expected["03:01"] and expected["08:00"]
    enqueued = []
    for label, at in MINUTES.items():
        started = ticked(rj, at)
        assert started == expected[label], label
        enqueued += started
    assert queued(rj) == sorted(enqueued)


def test_a_registry_edited_in_place_is_read_again(rj, tmp_path):
    """The cache entry is only used for the very bytes it was made from: an edit of the same
    size within the same second (same mtime on a coarse clock) is seen by the next tick."""
    rj.write(
        "".join(
            f'[jobs.j{i}]\ncommand = ["true"]\nschedule = "{i % 60} 3 * * *"\ndispatch = "queue"\n' for i in range(500)
        )
    )
    cache = tmp_path / "cache"
    env = {"XDG_CACHE_HOME": str(cache)}
    r = rj.run("tick", "--at", AT, env=env)
    assert [s["job"] for s in r.one("tick")["started"]] == [
        "j0",
        "j60",
        "j120",
        "j180",
        "j240",
        "j300",
        "j360",
        "j420",
        "j480",
    ]
    assert list((cache / "runjob").iterdir())  # the entry tick will use next time
    text = rj.config.read_text()
    before = rj.config.stat()
    edited = text.replace(
        '[jobs.j0]\ncommand = ["true"]\nschedule = "0 3', '[jobs.j0]\ncommand = ["true"]\nschedule = "1 3'
    )
    with open(rj.config, "r+") as f:  # the same inode, the same size
        f.write(edited)
    import os

    os.utime(rj.config, ns=(before.st_atime_ns, before.st_mtime_ns))  # and the same mtime
    r = rj.run("tick", "--at", AT, env=env)
    assert [s["job"] for s in r.one("tick")["started"]] == [
        "j60",
        "j120",
        "j180",
        "j240",
        "j300",
        "j360",
        "j420",
        "j480",
    ]
    # An edit that breaks the file is a config error at once, never the cached registry.
    rj.config.write_text(text.replace('schedule = "0 3 * * *"', 'schedule = "61 3 * * *"', 1))
    r = rj.run("tick", "--at", AT, env=env)
    assert r.code == 78 and "jobs.j0.schedule" in r.err and "61 3 * * *" in r.err


def test_a_tick_that_cannot_enqueue_every_due_run_enqueues_none(rj):
    """The due runs go onto the queue in one transaction: a failure part way leaves none behind
    (and no `queue.enqueued` record for a run that is not there), with a one-line error."""
    rj.write(
        "".join(f'[jobs.j{i}]\ncommand = ["true"]\nschedule = "0 3 * * *"\ndispatch = "queue"\n' for i in range(10))
    )
    assert rj.run("enqueue", "j0").code == 0  # creates the store
    db = sqlite3.connect(rj.state / "queue.sqlite3")
    db.execute("DELETE FROM entries")
    db.execute(
        "CREATE TRIGGER full BEFORE INSERT ON entries WHEN (SELECT COUNT(*) FROM entries) >= 5 "
        "BEGIN SELECT RAISE(ABORT, 'the queue is full'); END"
    )
    db.commit()
    r = rj.run("tick", "--at", AT)
    assert r.code == 125 and "Traceback" not in r.err and "the queue is full" in r.err, r.err
    assert len(r.err.strip().splitlines()) == 1
    assert r.events("queue.enqueued") == []
    assert db.execute("SELECT COUNT(*) FROM entries").fetchone()[0] == 0
    assert (rj.state / "queue.sqlite3.lock").stat().st_mode & 0o777 == 0o600  # the writers' gate
    db.execute("DROP TRIGGER full")
    db.commit()
    db.close()
    r = rj.run("tick", "--at", AT)
    assert r.code == 0 and len(r.events("queue.enqueued")) == 10
    assert len(queued(rj)) == 10


ZONES = [
    None,
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",  # a 30-minute daylight-saving shift
    "Asia/Kolkata",
    "America/St_Johns",
    "Pacific/Chatham",  # UTC+12:45
    "Europe/Dublin",  # negative DST in the zone data
    "America/Santiago",
]
FIELD = st.sampled_from(["*", "0", "30", "*/15", "1-3", "2,3", "59", "*/7"])
HOUR = st.sampled_from(["*", "0", "1", "2", "3", "*/2", "1-3", "2,3", "23"])
DOM = st.sampled_from(["*", "1", "15", "L", "LW", "29", "31", "1-7"])
MONTH = st.sampled_from(["*", "3", "10", "11", "3,10", "*/2"])
DOW = st.sampled_from(["*", "0", "SUN", "MON-FRI", "1#2", "5L", "6"])
# Days around the changes of 2026 in the zones above, and a few ordinary ones.
DAYS = [(3, 8), (3, 29), (4, 5), (9, 6), (9, 27), (10, 4), (10, 25), (11, 1), (1, 15), (6, 30)]


@settings(max_examples=400, deadline=None)
@given(
    st.tuples(FIELD, HOUR, DOM, MONTH, DOW),
    st.sampled_from(ZONES),
    st.sampled_from(DAYS),
    st.integers(min_value=-36 * 60, max_value=36 * 60),
)
def test_does_it_fire_this_minute_agrees_with_the_walk_of_the_time_line(fields, zone, day, minutes):
    """tick's "does it fire at this minute" (a lookup of the wall time in the parsed fields) says
    what the full walk says (the next fire time after the second before), DST nights included."""
    from runjob.triggers import cron

    expr = " ".join(fields)
    if cron.problem(expr):
        return
    minute = datetime(2026, *day, 12, tzinfo=UTC) + timedelta(minutes=minutes)
    walk = cron.next_fire(expr, cron.zone(zone), minute - timedelta(seconds=1), until=minute) == minute
    assert cron.fires_at(expr, zone, minute) == walk


@pytest.mark.parametrize("words", [["worker", "--burst"], ["worker", "--burst", "--concurrency", "2", "--max-jobs=3"]])
def test_a_worker_on_sqlite_loads_no_cli_framework_no_redis_no_templates(rj, words):
    rj.write('[jobs.t]\ncommand = ["true"]\n')
    assert rj.run("enqueue", "t").code == 0
    modules, _ = rj.imported(*words)
    assert not modules & {"typer", "click", "rich", "jinja2", "redis", "runjob.cli.app"}
    assert queued(rj) == []  # and it did run the entry


WORKER_WORDS = st.sampled_from(
    [
        "--burst",
        "--concurrency",
        "--max-jobs",
        "--max-time",
        "2",
        "8",
        "-1",
        "x",
        "10m",
        "",
        "--concurrency=3",
        "--max-jobs=",
        "--max-time=1h",
        "--burst=1",
        "--",
        "--help",
        "-h",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(WORKER_WORDS, max_size=6))
def test_what_the_worker_s_own_parser_takes_click_parses_the_same(words):
    import click
    import typer

    from runjob.cli.app import app
    from runjob.queue.fastcli import parse_worker

    fast = parse_worker(words)
    if fast is None:
        return  # left to typer, which parses and reports it as it always has
    command = typer.main.get_command(app).commands["worker"]
    try:
        params = command.make_context("worker", list(words), resilient_parsing=False).params
    except (click.UsageError, click.exceptions.Exit) as e:
        raise AssertionError(f"{words}: click refuses what the worker's parser took: {e}") from None
    assert params["concurrency"] == int(str(fast.get("--concurrency", "1")))
    assert params["burst"] == bool(fast.get("--burst"))
    assert params["max_jobs"] == (None if "--max-jobs" not in fast else int(str(fast["--max-jobs"])))
    assert params["max_time"] == fast.get("--max-time")


def test_queue_writers_wait_on_the_gate_and_go_the_moment_it_is_free(rj):
    """Writers to queue.sqlite3 queue on an flock, not in SQLite's sleeping busy handler: an
    enqueue finding the gate held is a blocked waiter in /proc/locks (woken on release)."""
    import fcntl
    import os
    from pathlib import Path

    from conftest import finish, wait_for

    rj.write('[jobs.t]\ncommand = ["true"]\n')
    assert rj.run("enqueue", "t").code == 0
    gate = rj.state / "queue.sqlite3.lock"
    inode = os.stat(gate).st_ino
    fd = os.open(gate, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        proc = rj.popen("enqueue", "t")

        def waiting() -> bool:
            lines = Path("/proc/locks").read_text().splitlines()
            return any("->" in line and f":{inode} " in line and f" {proc.pid} " in line for line in lines)

        assert wait_for(waiting), "the enqueue never waited on the gate"
        assert proc.poll() is None
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    r = finish(proc)
    assert r.code == 0, r.err
    assert queued(rj) == ["t", "t"]


def test_a_forked_run_imports_nothing_the_worker_has_not_imported_already(rj):
    """Every module a run needs is imported once, by the worker, before it forks: a module that
    each forked run imports for itself would show up once per run under -X importtime."""
    rj.write('[jobs.t]\ncommand = ["true"]\nlock_key = "t-{n}"\nparams = { n = { pattern = "[0-9]+" } }\n')
    for n in range(3):
        assert rj.run("enqueue", "t", f"n={n}").code == 0
    proc = subprocess.run(
        [PY, "-X", "importtime", RUNJOB, "worker", "--burst"],
        capture_output=True,
        env=rj.env(),
        cwd=rj.dir,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    names = [
        line.split("|")[-1].strip() for line in proc.stderr.decode().splitlines() if line.startswith("import time:")
    ]
    assert sorted({n for n in names if names.count(n) > 1}) == []
    assert queued(rj) == []
