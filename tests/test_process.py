"""Timeouts and signals: the whole process group goes, grandchildren included."""

from __future__ import annotations

import signal
import time

import pytest
from conftest import alive, finish, py, wait_for

# The child starts a grandchild (same process group), records both pids, then sleeps.
FAMILY = (
    "import os, subprocess, sys, time, signal\n"
    "if len(sys.argv) > 2: signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "g = subprocess.Popen(['sleep', '60'])\n"
    "open(sys.argv[1], 'w').write('%d %d' % (os.getpid(), g.pid))\n"
    "time.sleep(60)\n"
)


def family_job(rj, extra, ignore_term=False):
    pids = rj.dir / "pids"
    args = [str(pids)] + (["ignore"] if ignore_term else [])
    rj.write(f"[jobs.f]\ncommand = {py(FAMILY, *args)}\n{extra}\n")
    return pids


def test_timeout_kills_child_and_grandchild_exit_124(rj):
    pids = family_job(rj, 'timeout = "1s"\nkill_grace = "6s"')
    started = time.monotonic()
    r = rj.run("f")
    elapsed = time.monotonic() - started
    assert r.code == 124
    end = r.one("run.end")
    assert end["status"] == "timeout" and end["exit_code"] == 124 and end["level"] == "error"
    assert r.one("run.attempt")["status"] == "timeout"
    child, grandchild = map(int, pids.read_text().split())
    assert wait_for(lambda: not alive(child) and not alive(grandchild), timeout=5)
    assert elapsed < 5.5, "SIGTERM alone should have ended it well before the grace ran out"


def test_child_ignoring_sigterm_is_killed_after_grace(rj):
    pids = family_job(rj, 'timeout = "500ms"\nkill_grace = "1s"', ignore_term=True)
    started = time.monotonic()
    r = rj.run("f")
    elapsed = time.monotonic() - started
    assert r.code == 124
    assert 1.4 <= elapsed < 5
    child, grandchild = map(int, pids.read_text().split())
    assert wait_for(lambda: not alive(child) and not alive(grandchild), timeout=5)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signal_to_runjob_is_forwarded_and_exits_128_plus_n(rj, sig):
    pids = family_job(rj, 'timeout = "30s"\nkill_grace = "2s"')
    proc = rj.popen("f")
    assert wait_for(pids.exists)
    time.sleep(0.1)
    proc.send_signal(sig)
    r = finish(proc)
    assert r.code == 128 + sig
    end = r.one("run.end")
    assert end["status"] == "killed" and end["exit_code"] == 128 + sig
    child, grandchild = map(int, pids.read_text().split())
    assert wait_for(lambda: not alive(child) and not alive(grandchild), timeout=5)


def test_forwarded_signal_then_sigkill_after_grace(rj):
    pids = family_job(rj, 'timeout = "30s"\nkill_grace = "700ms"', ignore_term=True)
    proc = rj.popen("f")
    assert wait_for(pids.exists)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    r = finish(proc)
    assert r.code == 143 and 0.6 <= time.monotonic() - started < 4
    child, grandchild = map(int, pids.read_text().split())
    assert wait_for(lambda: not alive(child) and not alive(grandchild), timeout=5)


def test_signal_during_backoff_ends_the_run(rj):
    rj.write(f'[jobs.r]\ncommand = {py("import sys; sys.exit(1)")}\nretry = {{ attempts = 5, delay = "20s" }}\n')
    proc = rj.popen("r")
    time.sleep(1.0)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    r = finish(proc)
    assert r.code == 143 and time.monotonic() - started < 2
    assert r.one("run.end")["status"] == "killed" and len(r.events("run.attempt")) == 1


def test_daemon_holding_the_pipe_does_not_hang_runjob(rj):
    code = "import subprocess; subprocess.Popen(['sleep', '30'], start_new_session=True); print('bye')"
    rj.write(f'[jobs.d]\ncommand = {py(code)}\ntimeout = "20s"\n')
    started = time.monotonic()
    r = rj.run("d", timeout=15)
    assert r.code == 0 and r.one("run.output")["line"] == "bye"
    assert time.monotonic() - started < 3


def test_child_killed_by_a_signal_exits_128_plus_n(rj):
    rj.write(f'[jobs.k]\ncommand = {py("import os, signal; os.kill(os.getpid(), signal.SIGKILL)")}\n')
    r = rj.run("k")
    assert r.code == 137 and r.one("run.end")["status"] == "killed"


def test_child_env_carries_the_run_ids(rj):
    code = "import os; print(' '.join(os.environ[k] for k in ('RUNJOB_RUN_ID', 'RUNJOB_JOB', 'RUNJOB_CORRELATION_ID', 'RUNJOB_ATTEMPT')))"
    rj.write(f"[jobs.e]\ncommand = {py(code)}\n")
    r = rj.run("e")
    run_id = r.one("run.start")["run_id"]
    assert r.one("run.output")["line"] == f"{run_id} e {run_id} 1"
    r = rj.run("e", env={"RUNJOB_CORRELATION_ID": "req-42"})
    assert r.one("run.output")["line"].split()[2] == "req-42"
    assert all(rec["correlation_id"] == "req-42" for rec in r.records)
