"""Time that keeps its meaning: zones, daylight saving nights, `--at`, one cron dialect, clock steps.

Driven by `tick --at` / `status --at` (no faked clock, no sleeps). The right values follow
Debian cron's rules (cron(8), "Daylight Saving Time and other time changes").
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from conftest import q
from cronsim import CronSim
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from runjob.triggers import cron

UTC = UTC

# One zone per hemisphere: (zone, spring-forward night, fall-back night), each night as the UTC
# quarter hours around its transition with the jobs the right rules start at each.
NIGHTS = {
    # Berlin: 2026-03-29 02:00 CET -> 03:00 CEST (01:00Z); 2026-10-25 03:00 CEST -> 02:00 CET (01:00Z).
    "Europe/Berlin": [
        ("2026-03-29T00:30Z", {"quarter"}),  # 01:30 CET
        ("2026-03-29T00:45Z", {"quarter"}),
        ("2026-03-29T01:00Z", {"quarter", "nightly"}),  # 03:00 CEST: 02:30 was skipped, run once now
        ("2026-03-29T01:15Z", {"quarter"}),
        ("2026-03-29T01:30Z", {"quarter"}),  # 03:30 CEST: not again
        ("2026-10-25T00:15Z", {"quarter"}),  # 02:15 CEST, first pass
        ("2026-10-25T00:30Z", {"quarter", "nightly"}),  # 02:30 CEST
        ("2026-10-25T01:00Z", {"quarter"}),  # 02:00 CET, second pass
        ("2026-10-25T01:30Z", {"quarter"}),  # 02:30 CET: a fixed time runs once
        ("2026-10-25T02:00Z", {"quarter"}),  # 03:00 CET
    ],
    # Sydney: 2026-04-05 03:00 AEDT -> 02:00 AEST (16:00Z on 04-04); 2026-10-04 02:00 AEST -> 03:00 AEDT (16:00Z on 10-03).
    "Australia/Sydney": [
        ("2026-04-04T15:15Z", {"quarter"}),  # 02:15 AEDT, first pass
        ("2026-04-04T15:30Z", {"quarter", "nightly"}),  # 02:30 AEDT
        ("2026-04-04T16:00Z", {"quarter"}),  # 02:00 AEST, second pass
        ("2026-04-04T16:30Z", {"quarter"}),  # 02:30 AEST: not again
        ("2026-04-04T17:00Z", {"quarter"}),
        ("2026-10-03T15:30Z", {"quarter"}),  # 01:30 AEST
        ("2026-10-03T15:45Z", {"quarter"}),
        ("2026-10-03T16:00Z", {"quarter", "nightly"}),  # 03:00 AEDT: the skipped 02:30, once
        ("2026-10-03T16:30Z", {"quarter"}),  # 03:30 AEDT
    ],
}


def night_registry(rj, zone: str) -> None:
    """`nightly` (02:30) and `quarter` (*/15), each once in `zone` and once in the host's zone."""
    jobs = ""
    for name, expr in (("nightly", "30 2 * * *"), ("quarter", "*/15 * * * *")):
        jobs += f'[jobs.{name}]\ncommand = ["true"]\nschedule = "{expr}"\ntimezone = {q(zone)}\n'
        jobs += f'[jobs.{name}-host]\ncommand = ["true"]\nschedule = "{expr}"\n'
    rj.write(jobs)


def tick_at(rj, at: str, env: dict[str, str]) -> set[str]:
    r = rj.run("tick", "--at", at, env=env)
    assert r.code == 0, r.err
    return {s["job"] for s in r.one("tick")["started"]}


def due_at(rj, at: datetime, env: dict[str, str]) -> dict[str, datetime]:
    r = rj.run("status", "--json", "--at", at.isoformat(), env=env)
    assert r.code == 0, r.err
    return {row["job"]: datetime.fromisoformat(row["next_due"]) for row in json.loads(r.out)}


@pytest.mark.parametrize("zone", sorted(NIGHTS))
def test_transition_nights_follow_debian_rules_in_both_hemispheres(rj, zone):
    night_registry(rj, zone)
    env = {"TZ": zone}  # the host's zone: jobs without `timezone` must behave exactly like the named ones
    for at, right in NIGHTS[zone]:
        started = tick_at(rj, at.replace("Z", ":00+00:00"), env)
        assert started == right | {f"{name}-host" for name in right}, at


@pytest.mark.parametrize("zone", sorted(NIGHTS))
def test_status_promises_what_tick_does(rj, zone):
    night_registry(rj, zone)
    env = {"TZ": zone}
    for at, right in NIGHTS[zone]:
        minute = datetime.fromisoformat(at.replace("Z", ":00+00:00"))
        promised = due_at(rj, minute - timedelta(seconds=1), env)
        assert {job for job, when in promised.items() if when == minute} == right | {f"{n}-host" for n in right}, at
        for job, when in promised.items():
            assert when >= minute and when.utcoffset() == timedelta(0), (job, when)  # one form: UTC


def test_status_the_evening_before_names_the_real_instant(rj):
    night_registry(rj, "Europe/Berlin")
    env = {"TZ": "Europe/Berlin"}
    berlin = ZoneInfo("Europe/Berlin")

    def local(when: datetime | str) -> str:  # --json gives UTC (one form); the promise is read in Berlin
        return (datetime.fromisoformat(when) if isinstance(when, str) else when).astimezone(berlin).isoformat()

    spring = due_at(rj, datetime(2026, 3, 28, 23, tzinfo=UTC), env)
    assert local(spring["nightly"]) == local(spring["nightly-host"]) == "2026-03-29T03:00:00+02:00"
    autumn = due_at(rj, datetime(2026, 10, 24, 23, tzinfo=UTC), env)
    assert local(autumn["nightly"]) == local(autumn["nightly-host"]) == "2026-10-25T02:30:00+02:00"
    r = rj.run("list", "--json", "--at", "2026-10-25T00:50:00+00:00", env=env)
    listed = {row["name"]: row["next"] for row in json.loads(r.out)}
    assert all(t.endswith(".000Z") for t in listed["quarter"] + listed["nightly"])
    assert list(map(local, listed["quarter"])) == [
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T02:15:00+01:00",
        "2026-10-25T02:30:00+01:00",
    ]
    assert local(listed["nightly"][0]) == "2026-10-26T02:30:00+01:00"  # not 02:30 CET on the 25th: it ran at 02:30 CEST


def test_repeated_hour_new_york_both_passes_for_wildcards(rj):
    rj.write(
        '[defaults]\ntimezone = "America/New_York"\nstate_dir = ' + q(str(rj.state)) + "\n"
        '[jobs.nightly]\ncommand = ["true"]\nschedule = "30 1 * * *"\n'
        '[jobs.quarter]\ncommand = ["true"]\nschedule = "*/15 * * * *"\n'
        '[jobs.hourly]\ncommand = ["true"]\nschedule = "@hourly"\n'
    )
    starts: dict[str, int] = {}
    for i in range(10):  # 04:45Z .. 07:00Z; 01:00-01:59 local comes twice (05:xxZ EDT, 06:xxZ EST)
        at = datetime(2026, 11, 1, 4, 45, tzinfo=UTC) + timedelta(minutes=15 * i)
        for job in tick_at(rj, at.isoformat(), {"TZ": "UTC"}):
            starts[job] = starts.get(job, 0) + 1
    assert starts == {"quarter": 10, "hourly": 3, "nightly": 1}


def test_at_in_summer_is_summer_whatever_today_is(rj):
    night_registry(rj, "Europe/Berlin")
    env = {"TZ": "Europe/Berlin"}
    quarter = {"quarter", "quarter-host"}
    assert tick_at(rj, "2026-07-01T02:30:00+02:00", env) == {"nightly", "nightly-host"} | quarter
    assert tick_at(rj, "2026-07-01T03:30:00+02:00", env) == quarter
    # An --at without an offset is refused: 02:30 on a fall-back night would be two instants.
    for command in ("tick", "status", "list"):
        r = rj.run(command, "--at", "2026-10-25T02:30:00", env=env)
        assert r.code == 2 and "offset" in r.err and "Traceback" not in r.err


def test_host_zone_from_a_zoneinfo_file_and_a_bad_tz(rj):
    night_registry(rj, "Europe/Berlin")
    assert tick_at(rj, "2026-03-29T01:00:00+00:00", {"TZ": ":/usr/share/zoneinfo/Europe/Berlin"}) >= {"nightly-host"}
    r = rj.run("tick", "--at", "2026-03-29T01:00:00+00:00", env={"TZ": "Nowhere/Atlantis"})
    assert r.code == 78 and "TZ" in r.err and "Traceback" not in r.err and len(r.err.strip().splitlines()) == 1


SIX = '[jobs.weekly-sync]\ncommand = ["true"]\nschedule = "0 0 12 * * MON"\n[jobs.heartbeat]\ncommand = ["true"]\nschedule = "*/30 * * * * *"\n'


@pytest.mark.parametrize(
    "args",
    [
        ("validate",),
        ("list",),
        ("show", "heartbeat"),
        ("status",),
        ("tick", "--at", "2026-12-07T12:00:00+00:00"),
        ("export", "crontab"),
        ("export", "systemd"),
        ("export", "kubernetes"),
    ],
)
def test_six_fields_are_refused_by_every_command(rj, args):
    rj.write(SIX)
    r = rj.run(*args)
    assert r.code == 78, (r.out, r.err)
    assert "jobs.weekly-sync.schedule" in r.err and "jobs.heartbeat.schedule" in r.err
    assert "seconds are not supported" in r.err and "Traceback" not in r.err
    assert "runjob weekly-sync" not in r.out and '"started"' not in r.out


def test_five_field_twins_keep_working(rj):
    rj.write(SIX.replace("0 0 12 * * MON", "0 12 * * MON").replace("*/30 * * * * *", "*/30 * * * *"))
    assert rj.run("validate").code == 0
    assert tick_at(rj, "2026-12-07T12:00:00+00:00", {}) == {"weekly-sync", "heartbeat"}


# --- tick state: --at never records, clock steps never stop later ticks ---------------------


def clock_registry(rj) -> None:
    # `0-59 0-23 * * *` fires every minute like `* * * * *`, but is a fixed time for Debian's rules.
    rj.write(
        '[jobs.wild]\ncommand = ["true"]\nschedule = "* * * * *"\n'
        '[jobs.fixed]\ncommand = ["true"]\nschedule = "0-59 0-23 * * *"\n'
    )


def real_tick(rj) -> tuple[str, set[str]]:
    r = rj.run("tick")
    assert r.code == 0, r.err
    record = r.one("tick")
    return record["minute"], {s["job"] for s in record["started"]}


def recorded(rj, minute: datetime) -> None:
    rj.state.mkdir(exist_ok=True)
    (rj.state / "tick.json").write_text(json.dumps({"last_minute": minute.isoformat()}))


def test_tick_at_in_the_future_does_not_poison_later_ticks(rj):
    clock_registry(rj)
    assert tick_at(rj, "2031-01-01T00:00:00+00:00", {}) == {"wild", "fixed"}
    assert not (rj.state / "tick.json").exists()  # a replay records nothing
    assert real_tick(rj)[1] == {"wild", "fixed"}
    before = (rj.state / "tick.json").read_text()
    assert tick_at(rj, "2031-01-01T00:00:00+00:00", {}) == {"wild", "fixed"}
    assert (rj.state / "tick.json").read_text() == before


def test_tick_at_in_the_past_runs_what_was_due_then(rj):
    clock_registry(rj)
    real_tick(rj)
    assert tick_at(rj, "2026-01-01T03:00:00+00:00", {}) == {"wild", "fixed"}


def test_a_clock_that_was_far_ahead_never_stops_ticks(rj):
    clock_registry(rj)
    recorded(rj, datetime(2031, 1, 1, tzinfo=UTC))  # a forward step of the clock, since undone
    assert real_tick(rj)[1] == {"wild", "fixed"}


def test_a_small_step_back_runs_wildcard_jobs_only(rj):
    clock_registry(rj)
    # The clock was an hour ahead and stepped back: minutes up to then are repeated time.
    recorded(rj, datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(hours=1))
    minute, started = real_tick(rj)
    assert started == {"wild"}
    state = json.loads((rj.state / "tick.json").read_text())
    assert datetime.fromisoformat(state["last_minute"]) == datetime.fromisoformat(minute)
    assert datetime.fromisoformat(state["high_minute"]) > datetime.fromisoformat(minute)


def test_two_ticks_in_one_minute_start_a_job_once(rj):
    clock_registry(rj)
    procs = [rj.popen("tick") for _ in range(3)]
    minutes: dict[str, int] = {}
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        (record,) = [r for r in map(json.loads, out.decode().splitlines()) if r["event"] == "tick"]
        minutes[record["minute"]] = minutes.get(record["minute"], 0) + sum(
            s["job"] == "wild" for s in record["started"]
        )
    assert all(count == 1 for count in minutes.values()), minutes  # whatever minutes they fell in: once each


# --- the rules themselves, over random instants ----------------------------------------------

ZONES = ["Europe/Berlin", "Australia/Sydney", "America/New_York", "America/Santiago", "Australia/Lord_Howe"]
EXPRS = ["30 2 * * *", "*/15 * * * *", "0 * * * *", "15,45 1-3 * * *", "0 3 * * *", "*/20 2 * * *", "59 1 * * *"]


def _matches(expr: str, wall: datetime) -> bool:
    return next(CronSim(expr, wall - timedelta(seconds=1))) == wall


def oracle(expr: str, zone: str, minute: datetime) -> bool:
    """Debian's rules read off the wall clock, minute by minute (no cleverness to share bugs with)."""
    z = ZoneInfo(zone)
    local = minute.astimezone(z)
    wall = local.replace(tzinfo=None)
    if not cron.is_fixed(expr):
        return _matches(expr, wall)
    if _matches(expr, wall):
        first = wall.replace(tzinfo=z, fold=0).astimezone(UTC)
        return first == minute  # a repeated wall time: its first pass only
    before = (minute - timedelta(minutes=1)).astimezone(z).replace(tzinfo=None)
    skipped = before + timedelta(minutes=1)
    while skipped < wall:  # the clock jumped over these: run once, right after
        if _matches(expr, skipped):
            return True
        skipped += timedelta(minutes=1)
    return False


TRANSITIONS = [
    datetime(2026, 3, 29, 1, tzinfo=UTC),
    datetime(2026, 10, 25, 1, tzinfo=UTC),
    datetime(2026, 4, 4, 16, tzinfo=UTC),
    datetime(2026, 10, 3, 16, tzinfo=UTC),
    datetime(2026, 11, 1, 6, tzinfo=UTC),
    datetime(2026, 3, 8, 7, tzinfo=UTC),
    datetime(2026, 4, 5, 3, tzinfo=UTC),
    datetime(2026, 9, 6, 4, tzinfo=UTC),
    datetime(2026, 4, 4, 15, tzinfo=UTC),
    datetime(2026, 10, 3, 15, 30, tzinfo=UTC),
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    zone=st.sampled_from(ZONES),
    expr=st.sampled_from(EXPRS),
    near=st.sampled_from(TRANSITIONS),
    minutes=st.integers(-240, 240),
)
def test_tick_decision_is_debian_rule_and_status_promise(zone, expr, near, minutes):
    minute = near + timedelta(minutes=minutes)
    assert cron.fires_at(expr, zone, minute) == oracle(expr, zone, minute)
    # What status promises from just before a minute is that minute exactly when tick starts the job then.
    (promised,) = [t.astimezone(UTC) for t in cron.next_times(expr, zone, minute - timedelta(seconds=1), 1)]
    assert (promised == minute) == cron.fires_at(expr, zone, minute)
    assert promised >= minute and all(not cron.fires_at(expr, zone, m) for m in _minutes(minute, promised, 90))


def _minutes(start: datetime, end: datetime, cap: int) -> list[datetime]:
    out, m = [], start
    while m < end and len(out) < cap:
        out.append(m)
        m += timedelta(minutes=1)
    return out


@settings(max_examples=100, deadline=None)
@example("0 0 12 * * 1")
@example("*/30 * * * * *")
@given(st.text(st.sampled_from("0123456789*/,- "), min_size=1, max_size=30))
def test_problem_never_raises_and_refuses_six_fields(expr):
    found = cron.problem(expr)
    if len(expr.split()) == 6:
        assert found is not None and "seconds are not supported" in found
    elif found is None:
        assert len(expr.split()) == 5
