"""Pipelines (SPEC 8): stages in order, jobs of a stage at once, stop on failure, resume."""

from __future__ import annotations

import json

import pytest
from conftest import HOLD, PY, py, wait_for

# A job that appends its name to runs.log, then exits with the code in argv[3] unless the
# file in argv[4] exists (then 0).
COUNT = (
    "import os, sys\nopen(sys.argv[1], 'a').write(sys.argv[2] + '\\n')\n"
    "sys.exit(0 if len(sys.argv) > 4 and os.path.exists(sys.argv[4]) else int(sys.argv[3]))\n"
)


def counting(rj, name: str, code: int = 0, unless: str = "") -> str:
    args = [str(rj.dir / "runs.log"), name, str(code)] + ([unless] if unless else [])
    return f"[jobs.{name}]\ncommand = {py(COUNT, *args)}\n"


def runs(rj) -> list[str]:
    path = rj.dir / "runs.log"
    return path.read_text().split() if path.exists() else []


def holding(rj, name: str) -> str:
    return f"[jobs.{name}]\ncommand = {py(HOLD, str(rj.dir / (name + '.started')), str(rj.dir / 'release'))}\n"


def test_stages_run_in_order_and_the_jobs_of_a_stage_at_once(rj):
    rj.write(
        counting(rj, "first")
        + holding(rj, "left")
        + holding(rj, "right")
        + counting(rj, "last")
        + '[pipelines.nightly]\nstages = [["first"], ["left", "right"], ["last"]]\n'
    )
    live = rj.live("nightly")
    # Each of left and right holds until the release file exists: both started means at once.
    assert wait_for(lambda: (rj.dir / "left.started").exists() and (rj.dir / "right.started").exists())
    assert runs(rj) == ["first"]  # stage 3 waits for stage 2
    (rj.dir / "release").write_text("go")
    r = live.finish()
    assert r.code == 0, r.err
    assert runs(rj) == ["first", "last"]
    start, end = r.one("pipeline.start"), r.one("pipeline.end")
    pid = start["pipeline_run_id"]
    assert start["pipeline"] == "nightly" and start["stages"] == [["first"], ["left", "right"], ["last"]]
    assert end["status"] == "success" and end["failed_jobs"] == [] and end["resume"] is None
    assert [s["stage"] for s in r.events("pipeline.stage")] == [1, 2, 3]
    assert all(s["status"] == "success" and s["pipeline_run_id"] == pid for s in r.events("pipeline.stage"))
    job_ends = r.events("run.end")
    assert sorted(e["job"] for e in job_ends) == ["first", "last", "left", "right"]
    assert {e["correlation_id"] for e in job_ends} == {pid} and len({e["run_id"] for e in job_ends}) == 4
    assert pid not in {e["run_id"] for e in job_ends}


def test_a_failed_stage_stops_the_pipeline_with_the_first_failed_jobs_code(rj):
    rj.write(
        counting(rj, "pull")
        + counting(rj, "import-a", 3)
        + counting(rj, "import-b", 5)
        + counting(rj, "feed")
        + '[pipelines.nightly]\nstages = [["pull"], ["import-a", "import-b"], ["feed"]]\n'
    )
    r = rj.run("nightly")
    assert r.code == 3, r.err
    assert sorted(runs(rj)) == ["import-a", "import-b", "pull"]  # feed never ran
    end = r.one("pipeline.end")
    assert end["status"] == "failure" and end["exit_code"] == 3 and end["failed_jobs"] == ["import-a", "import-b"]
    assert end["resume"] == f"runjob resume {end['pipeline_run_id']}"
    assert [s["stage"] for s in r.events("pipeline.stage")] == [1, 2]


def test_resume_runs_what_did_not_succeed_and_later_stages_never_a_success(rj):
    fixed = str(rj.dir / "fixed")
    rj.write(
        counting(rj, "pull")
        + counting(rj, "good")
        + counting(rj, "flaky", 7, fixed)
        + counting(rj, "feed")
        + '[pipelines.nightly]\nstages = [["pull"], ["good", "flaky"], ["feed"]]\n'
    )
    first = rj.run("nightly")
    assert first.code == 7
    pid = first.one("pipeline.end")["pipeline_run_id"]
    again = rj.run("resume", pid[:8])  # a unique prefix is enough
    assert again.code == 7 and again.one("pipeline.end")["pipeline_run_id"] == pid
    (rj.dir / "fixed").write_text("")
    done = rj.run("resume", pid)
    assert done.code == 0, done.err
    assert done.one("pipeline.end")["status"] == "success"
    assert done.one("pipeline.start")["already_succeeded"] == ["good", "pull"]
    assert sorted(runs(rj)) == ["feed", "flaky", "flaky", "flaky", "good", "pull"]
    nothing = rj.run("resume", pid)
    assert nothing.code == 0 and not nothing.events("run.start")
    assert sorted(runs(rj)) == ["feed", "flaky", "flaky", "flaky", "good", "pull"]
    history = json.loads(rj.run("history", "nightly", "--json").out)
    assert len(history) == 1 and history[0]["status"] == "success"
    assert {j["job"]: j["status"] for j in history[0]["jobs"]} == {
        "pull": "success",
        "good": "success",
        "flaky": "success",
        "feed": "success",
    }
    assert rj.run("resume", "00000000-0000-4000-8000-000000000000").code == 2


def test_pipeline_params_go_to_the_jobs_that_declare_them(rj):
    rj.write(
        '[jobs.pull]\ncommand = ["echo", "{platform}"]\n[jobs.pull.params.platform]\ndefault = "one"\n'
        '[jobs.plain]\ncommand = ["echo", "plain"]\n'
        '[pipelines.nightly]\nstages = [["pull", "plain"]]\nparams = { platform = "all" }\n'
    )
    r = rj.run("nightly")
    assert r.code == 0, r.err
    params = {s["job"]: s["params"] for s in r.events("run.start")}
    assert params == {"pull": {"platform": "all"}, "plain": {}}
    override = rj.run("nightly", "platform=amazon")
    assert {s["job"]: s["params"] for s in override.events("run.start")} == {
        "pull": {"platform": "amazon"},
        "plain": {},
    }
    assert rj.run("nightly", "nosuch=1").code == 2
    bad = rj.run("nightly", "platform=-rf")
    assert bad.code == 2 and "pattern" in bad.err and not bad.out


@pytest.mark.parametrize(
    "pipelines, where, why",
    [
        ('[pipelines.p]\nstages = [["a"], ["nope"]]\n', "pipelines.p.stages[1][0]", "unknown job"),
        ('[pipelines.p]\nstages = [["a"], ["b", "a"]]\n', "pipelines.p.stages[1][1]", "in stage 1 already"),
        ('[pipelines.p]\nstages = [["a", "p"]]\n', "pipelines.p.stages[0][1]", "names itself"),
        ('[pipelines.a]\nstages = [["b"]]\n', "pipelines.a", "share one namespace"),
        ("[pipelines.p]\nstages = []\n", "pipelines.p.stages", "non-empty"),
        ('[pipelines.p]\nstages = [["a"]]\nparams = { x = "1" }\n', "pipelines.p.params.x", "no job"),
        (
            '[pipelines.p]\nstages = [["a"]]\nowners = { responsible = "ghost" }\n',
            "pipelines.p.owners.responsible",
            "not declared",
        ),
        ('[pipelines.p]\nstages = [["a"]]\nschedule = "@every 0s"\n', "pipelines.p.schedule", "at least 1s"),
        ('[pipelines.p]\nstages = [["a"]]\nlock_key = "../x"\n', "pipelines.p.lock_key", "bad lock key"),
        ('[pipelines.p]\nstages = [["a"]]\nbogus = 1\n', "pipelines.p.bogus", "unknown key"),
    ],
)
def test_config_errors_name_the_key(rj, pipelines, where, why):
    rj.write('[jobs.a]\ncommand = ["true"]\n[jobs.b]\ncommand = ["true"]\n' + pipelines)
    # A run reads no schedule (like a job's, a pipeline's is checked by validate, tick, list, status, export).
    for args in (["validate"], ["tick"]) if "schedule" in where else (["validate"], ["p"], ["a"]):
        r = rj.run(*args)
        assert r.code == 78, (args, r.out, r.err)
        assert f"{where}:" in r.err and why in r.err and "Traceback" not in r.err, r.err


def test_dry_run_prints_the_stages_and_runs_nothing(rj):
    rj.write(counting(rj, "pull") + counting(rj, "feed") + '[pipelines.nightly]\nstages = [["pull"], ["feed"]]\n')
    r = rj.run("run", "nightly", "--dry-run", "--format", "json")
    assert r.code == 0, r.err
    shown = json.loads(r.out)
    assert shown["dry_run"] is True and shown["pipeline"] == "nightly"
    assert [[j["job"] for j in stage] for stage in shown["stages"]] == [["pull"], ["feed"]]
    assert shown["stages"][0][0]["argv"][0] == PY
    assert runs(rj) == [] and not rj.state.exists()


def test_pipeline_timeout_stops_its_running_jobs(rj):
    rj.write(
        holding(rj, "slow")
        + counting(rj, "after")
        + '[pipelines.nightly]\nstages = [["slow"], ["after"]]\ntimeout = "1s"\n'
    )
    r = rj.run("nightly")  # the release file is never written: only the pipeline's timeout ends it
    assert r.code == 124, r.err
    end = r.one("pipeline.end")
    assert end["status"] == "timeout" and end["failed_jobs"] == ["slow"]
    assert r.one("run.end")["status"] == "killed" and runs(rj) == []


def test_owners_are_told_once_with_the_failed_jobs_named(rj):
    told = rj.dir / "told.jsonl"
    tell = "import sys; open(sys.argv[1], 'a').write(sys.stdin.read().strip() + '\\n')"
    rj.write(
        f"[owners.ops]\ncommand = {py(tell, str(told))}\n"
        + counting(rj, "x", 1)
        + counting(rj, "y", 2)
        + '[pipelines.nightly]\nstages = [["x", "y"]]\nowners = { responsible = "ops" }\n'
    )
    r = rj.run("nightly")
    assert r.code == 1
    payloads = [json.loads(line) for line in told.read_text().splitlines()]
    assert len(payloads) == 1
    assert payloads[0]["record"]["failed_jobs"] == ["x", "y"] and payloads[0]["record"]["pipeline"] == "nightly"
    assert r.one("notify.sent")["owner"] == "ops"


def test_a_running_pipeline_is_not_started_twice(rj):
    rj.write(holding(rj, "slow") + '[pipelines.nightly]\nstages = [["slow"]]\n')
    live = rj.live("nightly")
    assert wait_for(lambda: (rj.dir / "slow.started").exists())
    second = rj.run("nightly")
    assert second.code == 0 and second.one("lock.busy")["lock_key"] == "nightly"
    assert not second.events("pipeline.start")
    (rj.dir / "release").write_text("go")
    assert live.finish().code == 0


def test_status_exports_and_tick_know_pipelines(rj):
    rj.write(
        counting(rj, "pull")
        + counting(rj, "feed")
        + '[pipelines.nightly]\nstages = [["pull"], ["feed"]]\nschedule = "@every 1h"\ndescription = "export"\n'
    )
    tick = rj.run("tick")
    assert [s["job"] for s in tick.one("tick")["started"]] == ["nightly"]
    rows = {r["job"]: r for r in json.loads(rj.run("status", "--json").out)}
    assert rows["nightly"]["pipeline"] is True and rows["nightly"]["status"] == "success"
    assert rows["nightly"]["next_due"] is not None and runs(rj) == ["pull", "feed"]
    crontab = rj.run("export", "crontab", env={"PATH": "/usr/bin:/bin"})
    assert crontab.code == 0, crontab.err
    assert any(line.startswith("0 * * * * /") and line.endswith("/runjob nightly") for line in crontab.out.splitlines())
    units = rj.dir / "units"
    assert rj.run("export", "systemd", "--out", str(units)).code == 0
    assert "ExecStart=" in (units / "runjob-nightly.service").read_text()
    assert "runjob-pull.service" not in {p.name for p in units.iterdir()}
    listed = {row["name"]: row for row in json.loads(rj.run("list", "--json").out)}
    assert listed["nightly"]["stages"] == [["pull"], ["feed"]]
    assert rj.run("history", "pull", "--json").code == 0


def test_a_jobs_own_retry_and_transient_rules_hold_inside_a_pipeline(rj):
    # Fails on its first attempt (no marker yet), succeeds on the second: the job's retry decides.
    second_try = (
        "import os, sys\nif os.path.exists(sys.argv[1]): sys.exit(0)\nopen(sys.argv[1], 'w').write('x')\nsys.exit(3)\n"
    )
    rj.write(
        f"[jobs.flaky]\ncommand = {py(second_try, str(rj.dir / 'tried'))}\nretry = {{ attempts = 2 }}\n"
        + counting(rj, "busy-db", 75)
        + "[jobs.busy-db.transient]\nexit_codes = [75]\n"
        + '[pipelines.p]\nstages = [["flaky"], ["busy-db"]]\n'
    )
    r = rj.run("p")
    assert r.code == 75
    ends = {e["job"]: e for e in r.events("run.end")}
    assert ends["flaky"]["status"] == "success" and ends["flaky"]["attempts"] == 2
    assert ends["busy-db"]["status"] == "transient"
    assert r.one("pipeline.end")["failed_jobs"] == ["busy-db"]


def test_sigterm_to_a_pipeline_stops_its_running_jobs(rj):
    import signal

    rj.write(holding(rj, "slow") + counting(rj, "after") + '[pipelines.p]\nstages = [["slow"], ["after"]]\n')
    live = rj.live("p")
    assert wait_for(lambda: (rj.dir / "slow.started").exists())
    live.proc.send_signal(signal.SIGTERM)
    r = live.finish()
    assert r.code == 128 + signal.SIGTERM
    assert r.one("run.end")["status"] == "killed" and r.one("pipeline.end")["status"] == "killed"
    assert runs(rj) == []


def test_a_disabled_pipeline_is_never_due_but_runs_by_name_with_a_warning(rj):
    rj.write('[jobs.a]\ncommand = ["true"]\n[pipelines.p]\nstages = [["a"]]\nschedule = "* * * * *"\nenabled = false\n')
    assert rj.run("tick").one("tick")["started"] == []
    crontab = rj.run("export", "crontab")
    assert any(
        line.startswith("# disabled (enabled = false): * * * * * /") and line.endswith("/runjob p")
        for line in crontab.out.splitlines()
    )
    r = rj.run("p")
    assert r.code == 0 and r.one("pipeline.disabled")["level"] == "warning"
    assert r.one("pipeline.end")["status"] == "success"


def test_job_flags_are_refused_for_a_pipeline(rj):
    rj.write('[jobs.a]\ncommand = ["true"]\n[pipelines.p]\nstages = [["a"]]\n')
    r = rj.run("run", "p", "--timeout", "1s")
    assert r.code == 2 and "is a pipeline" in r.err and not r.out
