"""Interval (`@every`), one-time (`@at`) and manual schedules, and `enabled = false` (SPEC 7)."""

from __future__ import annotations

import json
import shlex
import subprocess
from datetime import UTC, datetime, timedelta, timezone

import pytest
import yaml
from conftest import PY, RUNJOB, q
from hypothesis import given
from hypothesis import strategies as st
from test_exports import need, systemd_times

from runjob.triggers import timers

UTC = UTC
FLAG_OK = "import os, sys; sys.exit(0 if os.path.exists(sys.argv[1]) else 1)"


def started(r) -> list[str]:
    assert r.code == 0, r.err
    return sorted(s["job"] for s in r.one("tick")["started"])


def every_json(rj) -> dict[str, str]:
    return json.loads((rj.state / "every.json").read_text())


def test_every_is_due_on_the_first_tick_then_once_its_interval_has_passed(rj):
    rj.write('[jobs.ev]\ncommand = ["true"]\nschedule = "@every 1h"\n')
    assert started(rj.run("tick")) == ["ev"]
    start = datetime.fromisoformat(every_json(rj)["ev"])  # tick recorded the start itself
    assert started(rj.run("tick")) == []  # right after: not again
    assert started(rj.run("tick", "--at", (start + timedelta(minutes=59)).isoformat())) == []
    assert started(rj.run("tick", "--at", (start + timedelta(hours=1)).isoformat())) == ["ev"]
    assert every_json(rj)["ev"] == start.isoformat()  # --at evaluates, records nothing
    rows = json.loads(rj.run("status", "--json").out)
    due = datetime.fromisoformat(rows[0]["next_due"])  # one form: UTC, milliseconds
    assert rows[0]["next_due"].endswith("Z") and abs(due - (start + timedelta(hours=1))) < timedelta(milliseconds=1)


def test_every_may_be_due_twice_within_one_minute_while_cron_is_not(rj):
    rj.write(
        '[jobs.ev]\ncommand = ["true"]\nschedule = "@every 1s"\n'
        '[jobs.minutely]\ncommand = ["true"]\nschedule = "* * * * *"\n'
    )
    first = rj.run("tick")
    assert started(first) == ["ev", "minutely"]
    minute = first.one("tick")["minute"]
    # The last start put two seconds back, in place of waiting for them to pass.
    back = datetime.fromisoformat(every_json(rj)["ev"]) - timedelta(seconds=2)
    (rj.state / "every.json").write_text(json.dumps({"ev": back.isoformat()}))
    second = rj.run("tick")
    if second.one("tick")["minute"] == minute:  # the same minute: cron's once-a-minute rule holds
        assert started(second) == ["ev"]
    else:
        assert "ev" in started(second)


def test_every_start_ahead_of_the_clock_does_not_stop_it(rj):
    rj.write('[jobs.ev]\ncommand = ["true"]\nschedule = "@every 10m"\n')
    ahead = datetime.now(UTC) + timedelta(days=1)  # recorded before the clock stepped back a day
    rj.state.mkdir(mode=0o700)
    (rj.state / "every.json").write_text(json.dumps({"ev": ahead.isoformat()}))
    assert started(rj.run("tick")) == ["ev"]
    assert datetime.fromisoformat(every_json(rj)["ev"]) < ahead


def test_at_is_due_at_every_tick_from_its_moment_until_a_run_succeeds(rj):
    flag = rj.dir / "ok"
    rj.write(
        f'[jobs.once]\ncommand = [{q(PY)}, "-c", {q(FLAG_OK)}, {q(str(flag))}]\nschedule = "@at 2026-06-01T03:00:00Z"\n'
    )
    assert started(rj.run("tick", "--at", "2026-06-01T02:59:59Z")) == []
    assert started(rj.run("tick", "--at", "2026-06-01T03:00:00Z")) == ["once"]  # fails: exit 1
    assert started(rj.run("tick")) == ["once"]  # fails again
    assert started(rj.run("tick")) == ["once"]  # the same minute: still due
    row = json.loads(rj.run("status", "--json").out)[0]
    assert row["done"] is False and row["status"] == "failure" and row["next_due"] is not None
    flag.write_text("")
    assert started(rj.run("tick")) == ["once"]  # succeeds
    assert started(rj.run("tick")) == []
    assert started(rj.run("tick", "--at", "2027-01-01T00:00:00Z")) == []  # done for good
    row = json.loads(rj.run("status", "--json").out)[0]
    assert row["done"] is True and row["next_due"] is None
    listed = json.loads(rj.run("list", "--json").out)[0]
    assert listed["done"] is True and listed["next"] == []


def test_manual_and_disabled_jobs_are_never_due_but_run_by_name(rj):
    rj.write(
        '[jobs.man]\ncommand = ["true"]\nschedule = "@manual"\n'
        '[jobs.off]\ncommand = ["true"]\nschedule = "* * * * *"\nenabled = false\n'
        '[jobs.off-every]\ncommand = ["true"]\nschedule = "@every 1s"\nenabled = false\n'
    )
    assert started(rj.run("tick")) == []
    assert started(rj.run("tick", "--at", "2026-12-07T12:00:00Z")) == []
    rows = {r["job"]: r for r in json.loads(rj.run("status", "--json").out)}
    assert rows["off"]["enabled"] is False and rows["off"]["next_due"] is None
    assert rows["man"]["enabled"] is True and rows["man"]["next_due"] is None
    r = rj.run("off")
    assert r.code == 0, r.err
    warning = r.one("run.disabled")
    assert warning["level"] == "warning" and r.one("run.end")["status"] == "success"
    assert not rj.run("man").events("run.disabled")


@pytest.mark.parametrize(
    "schedule, why",
    [
        ("@every 0s", "at least 1s"),
        ("@every 500ms", "at least 1s"),
        ("@every", "@every DURATION"),
        ("@every soon", "duration"),
        ("@at 2026-13-01T03:00:00Z", "not a moment"),
        ("@at 2026-12-01T03:00:00", "no Z or offset"),
        ("@at tomorrow", "not a moment"),
        ("@manual now", "@manual"),
    ],
)
def test_validate_rejects_bad_intervals_and_moments(rj, schedule, why):
    rj.write(
        f'[jobs.bad]\ncommand = ["true"]\nschedule = {q(schedule)}\n[jobs.good]\ncommand = ["true"]\n'
        'schedule = "@every 90s"\n'
    )
    for args in (["validate"], ["tick"], ["list"], ["status"]):
        r = rj.run(*args)
        assert r.code == 78, (args, r.out, r.err)
        assert "jobs.bad.schedule:" in r.err and why in r.err and "Traceback" not in r.err
        assert "jobs.good" not in r.err


@given(st.integers(min_value=1, max_value=365 * 86400))
def test_every_parses_any_whole_interval(seconds):
    assert timers.problem(f"@every {seconds}s") is None
    assert timers.interval(f"@every {seconds}s") == seconds
    assert timers.kind(f"@every {seconds}s") == timers.EVERY


@given(
    st.datetimes(
        min_value=datetime(1970, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]),
    )
)
def test_at_reads_any_rfc3339_moment(when):
    expr = f"@at {when.isoformat()}"
    assert timers.problem(expr) is None
    assert timers.moment(expr) == when


EXPORTED = """
[jobs.quarter]
command = ["true"]
schedule = "@every 15m"
[jobs.twohourly]
command = ["true"]
schedule = "@every 2h"
[jobs.once]
command = ["true"]
schedule = "@at 2026-12-24T18:00:00+01:00"
[jobs.man]
command = ["true"]
schedule = "@manual"
[jobs.off]
command = ["true"]
schedule = "30 3 * * *"
enabled = false
"""


def test_crontab_export_of_intervals_one_time_and_disabled_jobs(rj):
    rj.write(EXPORTED)
    r = rj.run("export", "crontab")
    assert r.code == 0, r.err
    program = shlex.quote(RUNJOB)  # each line calls runjob by its absolute path
    lines = [line.replace(program + " ", "runjob ") for line in r.out.splitlines()]
    assert "*/15 * * * * runjob quarter" in lines and "0 */2 * * * runjob twohourly" in lines
    assert not [
        line for line in lines if not line.startswith("#") and ("once" in line or "off" in line or "man" in line)
    ]
    assert any(line.startswith("# once: one-time") for line in lines)
    assert "# disabled (enabled = false): 30 3 * * * runjob off" in lines
    need("crontab")
    (rj.dir / "runjob.crontab").write_text(r.out)
    checked = subprocess.run(["crontab", "-n", str(rj.dir / "runjob.crontab")], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr  # Debian's own parser takes it


@pytest.mark.parametrize("target", ["crontab", "kubernetes"])
def test_an_interval_cron_cannot_express_is_refused_naming_the_job(rj, target):
    rj.write(
        '[jobs.ninety]\ncommand = ["true"]\nschedule = "@every 90s"\n'
        '[jobs.seven]\ncommand = ["true"]\nschedule = "@every 7m"\n'
    )
    r = rj.run("export", target)
    assert r.code == 78 and r.out == ""
    assert "jobs.ninety.schedule" in r.err and "jobs.seven.schedule" in r.err and "runjob tick" in r.err


def test_systemd_export_of_intervals_and_one_time_jobs(rj):
    rj.write(EXPORTED)
    out = rj.dir / "units"
    r = rj.run("export", "systemd", "--out", str(out))
    assert r.code == 0, r.err
    quarter = (out / "runjob-quarter.timer").read_text()
    assert "OnUnitActiveSec=900s\n" in quarter and "OnCalendar" not in quarter
    once = (out / "runjob-once.timer").read_text()
    assert "OnCalendar=2026-12-24 17:00:00 UTC\n" in once and "Persistent=true\n" in once
    assert not (out / "runjob-off.timer").exists() and not (out / "runjob-man.timer").exists()
    need("systemd-analyze")
    calendar = next(line for line in once.splitlines() if line.startswith("OnCalendar=")).partition("=")[2]
    assert systemd_times(calendar, datetime(2026, 1, 1, tzinfo=UTC), 1) == [datetime(2026, 12, 24, 17, tzinfo=UTC)]
    verify = subprocess.run(
        ["systemd-analyze", "verify", *map(str, sorted(out.glob("*.timer")))], capture_output=True, text=True
    )
    assert verify.returncode == 0 and not [line for line in verify.stderr.splitlines() if "runjob-" in line], (
        verify.stderr
    )


def test_kubernetes_export_of_intervals_leaves_one_time_jobs_out(rj):
    rj.write(EXPORTED)
    out = rj.dir / "k8s"
    r = rj.run("export", "kubernetes", "--out", str(out))
    assert r.code == 0, r.err
    schedules = {}
    for path in out.glob("*.yaml"):
        doc = yaml.safe_load(path.read_text())
        if doc["kind"] == "CronJob":
            schedules[doc["metadata"]["name"]] = doc["spec"]["schedule"]
    assert schedules == {"runjob-quarter": "*/15 * * * *", "runjob-twohourly": "0 */2 * * *"}
    assert "once: one-time" in r.err
