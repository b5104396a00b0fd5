"""Every exit code of SPEC section 3, from a real run."""

from __future__ import annotations

import os

import pytest
from conftest import HOLD, finish, py, wait_for

TOUCH = py("open('ran', 'w')")


@pytest.mark.parametrize(
    "command, expected, status",
    [
        (py("pass"), 0, "success"),
        (py("import sys; sys.exit(3)"), 3, "failure"),
        (py("import sys; sys.exit(255)"), 255, "failure"),
        (py(HOLD, "started", "never-released"), 124, "timeout"),  # holds on until killed
        ('["/nonexistent/program"]', 127, "failure"),
        ('["no-such-program-anywhere"]', 127, "failure"),
        ('["./not-executable.sh"]', 126, "failure"),
        (py("import os, signal; os.kill(os.getpid(), signal.SIGTERM)"), 143, "killed"),
    ],
    ids=["success", "child-3", "child-255", "timeout", "missing-path", "missing-on-path", "not-executable", "signal"],
)
def test_run_exit_codes(rj, command, expected, status):
    (rj.dir / "not-executable.sh").write_text("#!/bin/sh\necho hi\n")
    timeout = "500ms" if status == "timeout" else "1h"  # only the holding child may meet it, however slow a start
    rj.write(f'[jobs.x]\ncommand = {command}\ntimeout = "{timeout}"\n')
    r = rj.run("x")
    assert r.code == expected, r.err
    end = r.one("run.end")
    assert end["exit_code"] == expected and end["status"] == status
    if expected in (126, 127):
        assert end["error"].startswith("command not") and "not" in end["message"]


def test_busy_codes(rj):
    flag, release = rj.dir / "started", rj.dir / "release"
    for on_busy, expected in (("skip", 0), ("fail", 75), ("wait", 75)):
        flag.unlink(missing_ok=True)
        release.unlink(missing_ok=True)
        rj.write(f'[jobs.x]\ncommand = {py(HOLD, str(flag), str(release))}\non_busy = "{on_busy}"\nwait = "200ms"\n')
        first = rj.popen("x")
        assert wait_for(flag.exists)
        assert rj.run("x").code == expected  # the first holds the lock until released
        release.write_text("go")
        assert finish(first).code == 0


def test_usage_and_config_codes(rj):
    rj.write('[jobs.x]\ncommand = ["true"]\n')
    assert rj.run("nope").code == 2
    assert rj.run("run", "x", "--timeout", "soon").code == 2
    assert rj.run("run", "x", "--format", "xml").code == 2
    rj.write('[jobs.x]\ncommand = ["true"]\ntimeout = "soon"\n')
    assert rj.run("x").code == 78


def test_unwritable_state_dir_is_125_and_nothing_runs(rj):
    marker = rj.dir / "ran"
    blocker = rj.dir / "a-file"
    blocker.write_text("")
    rj.write(f'[defaults]\nstate_dir = "{blocker}/state"\n[jobs.x]\ncommand = {TOUCH}\n')
    r = rj.run("x")
    assert r.code == 125 and "cannot open lock file" in r.err and r.err.count("\n") == 1
    assert not marker.exists() and not r.events("run.start")


def test_unwritable_log_file_is_125_and_nothing_runs(rj):
    blocker = rj.dir / "a-file"
    blocker.write_text("")
    rj.write(f'[jobs.x]\ncommand = {TOUCH}\nlog_file = "{blocker}/x.log"\n')
    r = rj.run("x")
    assert r.code == 125 and "cannot open log file" in r.err
    assert not (rj.dir / "ran").exists()
    assert os.path.exists(blocker)
