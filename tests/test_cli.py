"""list, show, validate, schema, --dry-run and the run flags."""

from __future__ import annotations

import fcntl
import json
import subprocess

from conftest import HOLD, RUNJOB, finish, py

REGISTRY = """
[owners.ops]
command = ["true"]
[owners.dom]
webhook = "http://127.0.0.1:9/hook"

[jobs.imp]
description = "import one supplier"
command = ["python3", "bin/import.py", "--supplier={supplier}"]
schedule = "15 * * * *"
lock_key = "cron.suppliers.import.supplier.{supplier}"
instances = [{ supplier = "acme" }]
timeout = "20m"
env = { APP_ENV = "prod", DB_PASSWORD = "from-config-secret" }
secrets = ["DB_PASSWORD"]
owners = { responsible = "ops", accountable = "dom" }
[jobs.imp.params.supplier]
pattern = "[a-z]+"

[jobs.plain]
command = ["true"]
"""


def test_dry_run_prints_the_plan_and_runs_nothing(rj):
    rj.write(REGISTRY)
    r = rj.run("run", "imp", "supplier=acme", "--dry-run")
    plan = json.loads(r.out)
    assert plan["dry_run"] is True and plan["argv"] == ["python3", "bin/import.py", "--supplier=acme"]
    assert plan["lock_key"] == "cron.suppliers.import.supplier.acme"
    assert plan["lock_file"] == str(rj.state / "locks" / "cron.suppliers.import.supplier.acme.lock")
    assert plan["env_added"] == {"APP_ENV": "prod", "DB_PASSWORD": "***"} and "from-config-secret" not in r.out
    assert plan["env"]["APP_ENV"] == "prod" and plan["env"]["DB_PASSWORD"] == "***"  # the child's whole env
    assert plan["timeout_s"] == 1200.0 and plan["owners"] == {"responsible": "ops", "accountable": "dom"}
    assert plan["lock_held"] is False and plan["log_file"] == "stdout" and plan["cwd"] == str(rj.dir)
    assert plan["executable"].endswith("python3") and plan["executable_problem"] is None
    assert r.code == 0
    assert not (rj.state / "locks").exists()


def test_dry_run_reports_a_held_lock_and_a_missing_program(rj):
    rj.write('[jobs.x]\ncommand = ["./missing-tool"]\n')
    locks = rj.state / "locks"
    locks.mkdir(parents=True)
    with open(locks / "x.lock", "w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)  # held by this test process until the file is closed
        r = rj.run("run", "x", "--dry-run")
    plan = json.loads(r.out)
    assert plan["lock_held"] is True and plan["executable_problem"].startswith("command not found")
    assert r.code == 127


def test_run_flags(rj):
    rj.write(
        f"[jobs.s]\ncommand = {py(HOLD, 'started', 'never-released')}\n"  # holds on until killed
        '[jobs.p]\ncommand = ["echo", "{v}"]\n[jobs.p.params.v]\npattern = "[a-z]+"\n'
    )
    r = rj.run("run", "s", "--timeout", "300ms")
    assert r.code == 124 and r.one("run.start")["timeout_s"] == 0.3
    r = rj.run("run", "p", "--param", "v=abc")
    assert r.one("run.output")["line"] == "abc"
    r = rj.run("p", "v=abc", "--format", "json")  # crontab form with a flag goes through `run`
    assert r.one("run.output")["line"] == "abc"


def test_list_and_show_json(rj):
    rj.write(REGISTRY)
    r = rj.run("list", "--json")
    jobs = {j["name"]: j for j in json.loads(r.out)}
    assert set(jobs) == {"imp", "plain"}
    imp = jobs["imp"]
    assert imp["schedule"] == "15 * * * *" and len(imp["next"]) == 3 and imp["timeout_s"] == 1200.0
    assert imp["lock_key"] == "cron.suppliers.import.supplier.{supplier}" and imp["params"] == ["supplier"]
    assert jobs["plain"]["next"] == []
    shown = json.loads(rj.run("show", "imp", "--json").out)
    assert shown["kill_grace"] == 10.0 and shown["retry"]["attempts"] == 1 and shown["output"] == "json"
    assert shown["owners_detail"]["accountable"]["webhook"] == "http://127.0.0.1:9/hook"
    assert rj.run("show", "nope").code == 2


def test_listing_off_a_terminal_is_json(rj):
    rj.write(REGISTRY)
    assert isinstance(json.loads(rj.run("list").out), list)
    shown = json.loads(rj.run("validate", "--json").out)
    shown.pop("warnings")  # the test's state dir is under /tmp, which validate warns about
    assert shown == {"valid": True, "path": str(rj.config), "jobs": 2}


def test_pretty_output_on_a_terminal(rj):
    """Under a real pty (script(1)), run and list use rich, not JSON."""
    rj.write(REGISTRY)
    out = subprocess.run(
        ["script", "-qec", f"{RUNJOB} run plain --format pretty; {RUNJOB} list", "/dev/null"],
        capture_output=True,
        text=True,
        env=rj.env({"COLUMNS": "200"}),
        cwd=rj.dir,
        timeout=60,
    ).stdout
    assert "run.end" in out and "succeeded" in out and '{"timestamp"' not in out
    assert "cron.suppliers.import.supplier.{supplier}" in out


def test_help_and_version(rj):
    r = rj.run("--help")
    assert r.code == 0 and "crontab form" in r.out
    r = rj.run("--version")
    assert r.code == 0 and r.out.startswith("runjob ")
    assert finish
