"""Schedules: cron parsing, export to crontab / systemd / Kubernetes, tick, init/add, the .pyz."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from conftest import HOLD, PY, RUNJOB, finish, py, q, wait_for
from cronsim import CronSim
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_exports import systemd_times

from runjob.export.systemd import Untranslatable, on_calendar
from runjob.registry import validate
from runjob.triggers import cron

ROOT = Path(__file__).parent.parent

REGISTRY = """
[owners.ops]
command = ["true"]
[owners.dom]
command = ["true"]

[jobs.every5]
description = "pull orders"
command = ["true"]
schedule = "*/5 * * * *"
owners = { responsible = "ops", accountable = "dom" }

[jobs.berlin]
command = ["true"]
schedule = "0 6 * * mon-fri"
timezone = "Europe/Berlin"

[jobs.imp]
command = ["echo", "{supplier}"]
schedule = "@hourly"
lock_key = "imp.{supplier}"
instances = [{ supplier = "acme" }, { supplier = "globex" }]
timeout = "10m"
kill_grace = "5s"
retry = { attempts = 3, max_delay = "1m" }
[jobs.imp.params.supplier]
pattern = "[a-z%]+"

[jobs.manual]
command = ["true"]
"""


def test_aliases_names_and_timezones():
    assert cron.expand("@hourly") == "0 * * * *" and cron.expand(" @DAILY ") == "0 0 * * *"
    reg = validate.parse_string(
        '[defaults]\ntimezone = "Asia/Tokyo"\n[jobs.a]\ncommand = ["x"]\nschedule = "0 9 * jan mon"\n'
    )
    assert reg.jobs["a"].timezone == "Asia/Tokyo"
    start = datetime(2027, 1, 1, tzinfo=UTC)
    (t,) = cron.next_times("0 9 * jan mon", "Asia/Tokyo", start, 1)
    assert (t.month, t.weekday(), t.hour, str(t.tzinfo)) == (1, 0, 9, "Asia/Tokyo")


def test_list_and_show_give_next_due_times(rj):
    rj.write(REGISTRY)
    jobs = {j["name"]: j for j in json.loads(rj.run("list", "--json").out)}
    nxt = [datetime.fromisoformat(t) for t in jobs["every5"]["next"]]
    assert len(nxt) == 3 and all(t.minute % 5 == 0 for t in nxt) and nxt[0] < nxt[1] < nxt[2]
    berlin = ZoneInfo("Europe/Berlin")  # times are given in UTC (`...Z`); the job's zone says 06:00
    assert all(datetime.fromisoformat(t).astimezone(berlin).hour == 6 for t in jobs["berlin"]["next"])
    assert len(json.loads(rj.run("show", "imp", "--json").out)["next"]) == 5


def test_export_crontab(rj):
    # one lock for both: "imp.glo%bex" is no valid lock key, and validate says so
    rj.write(
        REGISTRY.replace('{ supplier = "globex" }', '{ supplier = "glo%bex" }').replace('"imp.{supplier}"', '"imp"')
    )
    r = rj.run("export", "crontab")
    assert r.code == 0, r.err
    lines = r.out.replace(f" {RUNJOB} ", " runjob ").splitlines()  # runjob is called by absolute path
    assert f"RUNJOB_CONFIG={rj.config}" in lines and any(line.startswith("PATH=") for line in lines)
    jobs = [line for line in lines if line and not line.startswith("#") and "=" not in line.split()[0]]
    assert jobs == [
        "*/5 * * * * runjob every5",
        "@hourly runjob imp supplier=acme",
        "@hourly runjob imp supplier=glo\\%bex",
        "0 6 * * mon-fri runjob berlin",
    ]  # host zone first
    assert "*/5 * * * * runjob every5" in lines and "@hourly runjob imp supplier=acme" in lines
    assert "@hourly runjob imp supplier=glo\\%bex" in lines  # % escaped for cron
    assert lines.index("CRON_TZ=Europe/Berlin") < lines.index("0 6 * * mon-fri runjob berlin")
    assert lines.index("CRON_TZ=Europe/Berlin") > lines.index("*/5 * * * * runjob every5")
    assert "# every5: pull orders" in lines and "# owners: responsible: ops, accountable: dom" in lines
    assert not any("manual" in line for line in lines)
    out = rj.dir / "out"
    assert rj.run("export", "crontab", "--out", str(out)).code == 0
    assert (out / "runjob.crontab").read_text() == r.out


def _field(low: int, high: int, names: list[str] | None = None):
    value = st.integers(low, high)
    single = value.map(str) if not names else st.one_of(value.map(str), st.sampled_from(names))
    rng = st.tuples(value, value).map(lambda ab: f"{min(ab)}-{max(ab)}")
    step = st.tuples(st.sampled_from(["*", f"{low}-{high}"]), st.integers(1, max(1, high - low))).map(
        lambda t: f"{t[0]}/{t[1]}"
    )
    part = st.one_of(single, rng, step)
    return st.one_of(st.just("*"), st.lists(part, min_size=1, max_size=3).map(",".join))


cron_exprs = st.tuples(
    _field(0, 59), _field(0, 23), _field(1, 28), _field(1, 12, ["jan", "jun", "dec"]), _field(0, 6, ["mon", "fri"])
).map(" ".join)


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expr=cron_exprs, base=st.datetimes(datetime(2025, 1, 1), datetime(2030, 12, 31)))
def test_systemd_calendar_fires_when_cron_does(expr, base):
    try:
        calendar = on_calendar(expr)
    except Untranslatable:
        assume(False)
    base = base.replace(second=0, microsecond=0, tzinfo=UTC)
    it = CronSim(expr, base)
    expected = [next(it) for _ in range(5)]
    assert systemd_times(calendar, base, 5) == expected, calendar


@pytest.mark.parametrize(
    "expr, why",
    [
        ("0 0 1 * mon", "day of month OR day of week"),
        ("0 0 LW * *", "extension"),
        ("0 0 * * 1#2,5", "extension"),
        ("0 0 * * */2", "step"),
    ],
)
def test_systemd_refuses_what_it_cannot_express(rj, expr, why):
    with pytest.raises(Untranslatable, match=why):
        on_calendar(expr)
    rj.write(f'[jobs.j]\ncommand = ["true"]\nschedule = "{expr}"\n')
    r = rj.run("export", "systemd")
    assert r.code == 78 and f'jobs.j.schedule: systemd cannot express "{expr}"' in r.err


def test_weekday_ranges_follow_systemd_order():
    assert on_calendar("0 6 * * 0-1") == "Mon,Sun *-*-* 06:00:00"
    assert on_calendar("0 6 * * 1-5") == "Mon..Fri *-*-* 06:00:00"
    assert on_calendar("*/31 * * * *") == "*-*-* *:00,31:00"  # systemd 252 skips midnight for *:0/31
    with pytest.raises(Untranslatable, match="wraps around"):
        on_calendar("0 0 * * 5-1")


def test_export_systemd_units(rj):
    rj.write(REGISTRY)
    out = rj.dir / "units"
    r = rj.run("export", "systemd", "--out", str(out))
    assert r.code == 0, r.err
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        f"runjob-{n}.{kind}" for n in ("every5", "berlin", "imp-acme", "imp-globex") for kind in ("service", "timer")
    )
    service = (out / "runjob-imp-acme.service").read_text()
    assert "Type=oneshot" in service and f"--config {rj.config} imp supplier=acme" in service
    assert "TimeoutStartSec=" + str(3 * (600 + 5) + 0 + 30) in service  # retry delay 0: no backoff
    timer = (out / "runjob-berlin.timer").read_text()
    assert "OnCalendar=Mon..Fri *-*-* 06:00:00 Europe/Berlin" in timer and "Persistent" not in timer
    if shutil.which("systemd-analyze"):
        for unit in out.glob("*.timer"):
            calendar = unit.read_text().split("OnCalendar=")[1].split("\n")[0]
            assert subprocess.run(["systemd-analyze", "calendar", calendar], capture_output=True).returncode == 0


def test_export_kubernetes(rj):
    kv = pytest.importorskip("kubernetes_validate")
    rj.write(REGISTRY)
    r = rj.run("export", "kubernetes", "--image", "registry.example/shop:1.2", "--namespace", "shop")
    assert r.code == 0, r.err
    docs = {d["metadata"]["name"]: d for d in yaml.safe_load_all(r.out) if d["kind"] == "CronJob"}
    assert set(docs) == {"runjob-every5", "runjob-berlin", "runjob-imp-acme", "runjob-imp-globex"}
    for doc in docs.values():
        kv.validate(doc, kv.latest_version(), strict=True)
    imp = docs["runjob-imp-acme"]
    spec, job = imp["spec"], imp["spec"]["jobTemplate"]["spec"]
    assert imp["apiVersion"] == "batch/v1" and imp["kind"] == "CronJob" and imp["metadata"]["namespace"] == "shop"
    assert spec["schedule"] == "0 * * * *" and spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] == 120 and spec["successfulJobsHistoryLimit"] == 3
    assert job["backoffLimit"] == 0 and job["activeDeadlineSeconds"] == 3 * 605 + 0 + 30
    container = job["template"]["spec"]["containers"][0]
    assert (
        container["command"] == ["runjob", "imp", "supplier=acme"] and container["image"] == "registry.example/shop:1.2"
    )
    assert job["template"]["spec"]["restartPolicy"] == "Never"
    every5 = docs["runjob-every5"]
    assert every5["metadata"]["labels"]["runjob.dev/owner-responsible"] == "ops"
    assert every5["metadata"]["annotations"]["runjob.dev/description"] == "pull orders"
    assert docs["runjob-berlin"]["spec"]["timeZone"] == "Europe/Berlin" and "timeZone" not in every5["spec"]


def tick_registry(rj, marks: Path) -> None:
    mark = "import sys; open(sys.argv[1], 'a').write(sys.argv[2] + chr(10))"
    rj.write(
        f'[jobs.minutely]\ncommand = {py(mark, str(marks), "minutely")}\nschedule = "* * * * *"\n'
        f'[jobs.three]\ncommand = {py(mark, str(marks), "three")}\nschedule = "0 3 * * *"\ncatch_up = "2h"\n'
        f'[jobs.three-nocatch]\ncommand = {py(mark, str(marks), "three-nocatch")}\nschedule = "0 3 * * *"\n'
        f'[jobs.five]\ncommand = {py(mark, str(marks), "five")}\nschedule = "*/5 * * * *"\ncatch_up = "1h"\n'
        f'[jobs.imp]\ncommand = {py(mark, str(marks), "imp-{s}")}\nschedule = "30 3 * * *"\nlock_key = "imp.{{s}}"\n'
        f'instances = [{{ s = "a" }}, {{ s = "b" }}]\n[jobs.imp.params.s]\npattern = "[a-z]"\n'
    )


def ticked(rj, marks: Path, at: str, expect: int) -> list[str]:
    r = rj.run("tick", "--at", at)
    assert r.code == 0, r.err
    record = r.one("tick")
    assert len(record["started"]) == expect, record
    assert wait_for(lambda: marks.exists() and len(marks.read_text().splitlines()) >= expect if expect else True)
    names = sorted(marks.read_text().splitlines()) if marks.exists() else []
    marks.unlink(missing_ok=True)
    return names


def last_ticked(rj, minute: str) -> None:
    """The state a real tick at `minute` leaves (`--at` replays record nothing)."""
    rj.state.mkdir(exist_ok=True)
    (rj.state / "tick.json").write_text(json.dumps({"last_minute": minute}))


def test_tick_starts_due_jobs_once_and_catches_up_once(rj):
    marks = rj.dir / "marks"
    tick_registry(rj, marks)
    assert ticked(rj, marks, "2026-11-23T02:58:00+00:00", 1) == ["minutely"]
    assert ticked(rj, marks, "2026-11-23T02:58:30+00:00", 1) == ["minutely"]  # a replay: --at records nothing
    # Last real tick 02:58, host down until 03:40: three (catch_up 2h) and five (1h) once; three-nocatch not.
    last_ticked(rj, "2026-11-23T02:58:00+00:00")
    assert ticked(rj, marks, "2026-11-23T03:41:00+00:00", 3) == ["five", "minutely", "three"]
    last_ticked(rj, "2026-11-23T03:41:00+00:00")
    assert ticked(rj, marks, "2026-11-23T03:42:00+00:00", 1) == ["minutely"]
    # Next day 03:30: five and the imp instances are due; three catches up its 03:00 (within 2h).
    last_ticked(rj, "2026-11-24T02:50:00+00:00")
    assert ticked(rj, marks, "2026-11-24T03:30:00+00:00", 5) == ["five", "imp-a", "imp-b", "minutely", "three"]
    last_ticked(rj, "2026-11-24T03:44:00+00:00")
    r = rj.run("tick", "--at", "2026-11-24T03:45:00+00:00")
    started = r.one("tick")["started"]
    assert {(s["job"], s["reason"]) for s in started} == {("five", "due"), ("minutely", "due")}
    assert all(isinstance(s["pid"], int) for s in started)


def test_tick_jobs_run_detached(rj):
    started, release, done = rj.dir / "started", rj.dir / "release", rj.dir / "slow-done"
    held = HOLD + "if os.path.exists(sys.argv[2]): open(sys.argv[3], 'w').close()\n"  # done only once released
    rj.write(f'[jobs.slow]\ncommand = {py(held, str(started), str(release), str(done))}\nschedule = "* * * * *"\n')
    with open(rj.dir / "tick.log", "wb") as log:  # a file, not a pipe the detached job would hold open
        proc = rj.popen("tick", stdout=log, stderr=log)
        assert proc.wait(timeout=60) == 0  # while the job still holds on: tick did not wait for it
    assert not done.exists()
    assert wait_for(started.exists, timeout=60)  # the job is running on its own
    release.write_text("go")
    assert wait_for(done.exists, timeout=60)

    def events() -> list[str]:
        whole = (rj.dir / "tick.log").read_bytes().split(b"\n")[:-1]  # only whole lines
        return [json.loads(line)["event"] for line in whole]

    assert wait_for(lambda: events()[-1] == "run.end", timeout=60)
    assert events()[0] == "tick"  # the job's records follow tick's, appended to the same file


def test_tick_with_160_jobs(rj):
    jobs = "".join(f'[jobs.j{i}]\ncommand = ["true"]\nschedule = "{i % 60} 3 * * *"\n' for i in range(160))
    rj.write(jobs)
    r = rj.run("tick", "--at", "2026-11-23T12:00:00+00:00")
    assert r.code == 0 and r.one("tick")["started"] == []


def test_init_and_add(rj):
    path = rj.dir / "new.toml"
    assert rj.run("--config", str(path), "init").code == 0
    assert rj.run("--config", str(path), "validate").code == 0
    assert rj.run("--config", str(path), "init").code == 2  # never overwrites by accident
    path.write_text(path.read_text() + "# a comment of mine\n")
    r = rj.run(
        "--config",
        str(path),
        "add",
        "nightly",
        "--command",
        "backup.sh --all 'a b'",
        "--schedule",
        "0 2 * * *",
        "--timeout",
        "2h",
        "--lock-key",
        "backup",
        "--description",
        "the backup",
    )
    assert r.code == 0, r.err
    text = path.read_text()
    assert "# a comment of mine" in text
    job = validate.parse_string(text).jobs["nightly"]
    assert job.command == ["backup.sh", "--all", "a b"] and job.schedule == "0 2 * * *" and job.timeout == 7200
    assert job.lock_key == "backup" and job.description == "the backup"
    for bad in (
        ["nightly", "--command", "x"],
        ["worse", "--command", "x", "--schedule", "99 * * * *"],
        ["Bad Name", "--command", "x"],
        ["w", "--command", "x", "--timeout", "soon"],
    ):
        r = rj.run("--config", str(path), "add", *bad)
        assert r.code == 2 and path.read_text() == text, (bad, r.err)


def test_add_refuses_a_broken_registry(rj):
    rj.config.write_text('[jobs.a]\ncommand = ["x"]\ntimeout = "x"\n')
    before = rj.config.read_text()
    r = rj.run("add", "b", "--command", "true")
    assert r.code == 78 and rj.config.read_text() == before


# A pip install, a compileall and imports compiled from source: past the suite's 120 s
# per test on a loaded two-core host. The limit only keeps a hung build from hanging the suite.
@pytest.mark.timeout(900)
def test_single_file_build_runs_with_plain_python(tmp_path):
    if not Path("/usr/bin/python3").exists():
        pytest.skip("no system python3")
    checkout = tmp_path / "checkout"  # a copy: the build writes build/ and dist/ beside it, not in the tree
    for tree in ("src", "tools"):
        shutil.copytree(ROOT / tree, checkout / tree, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, checkout / name)
    build = subprocess.run(
        [str(checkout / "tools" / "build-pyz")],
        capture_output=True,
        text=True,
        env=os.environ | {"PYTHON": PY},
        timeout=600,
    )
    assert build.returncode == 0, build.stderr
    pyz = checkout / "dist" / "runjob.pyz"
    clean = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # no venv: only the system's python3
    version = subprocess.run([str(pyz), "--version"], capture_output=True, text=True, env=clean)
    assert version.returncode == 0 and version.stdout.startswith("runjob ")
    (tmp_path / "jobs.toml").write_text('[defaults]\nstate_dir = "st"\n[jobs.hi]\ncommand = ["echo", "hi"]\n')
    run = subprocess.run([str(pyz), "hi"], capture_output=True, text=True, env=clean, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert [json.loads(line)["event"] for line in run.stdout.splitlines()] == [
        "run.start",
        "run.output",
        "run.attempt",
        "run.end",
    ]
    assert sys.version_info >= (3, 11) and q("x") and finish
