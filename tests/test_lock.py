"""Overlap locks: one run per key, parallel keys, on_busy modes, SIGKILL safety."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from conftest import HOLD, PY, alive, finish, py, wait_for

SLEEPER = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(float(sys.argv[2]))"


def sleeper_job(rj, name="s", seconds="1.5", extra="", params=""):
    pidfile = rj.dir / f"{name}.pid"
    rj.write(f'[jobs.{name}]\ncommand = {py(SLEEPER, str(pidfile), seconds)}\n{extra}\n{params}')
    return pidfile


def test_two_concurrent_runs_of_one_key_only_one_runs(rj):
    release = rj.dir / "release"
    rj.write(f"[jobs.s]\ncommand = {py(HOLD, str(rj.dir / 'started'), str(release))}\n")
    procs = [rj.popen("s") for _ in range(2)]
    # The winner holds the lock until the other launch has exited: no timing guesses.
    assert wait_for(lambda: sum(p.poll() is not None for p in procs) == 1, timeout=30)
    release.write_text("go")
    results = [finish(p) for p in procs]
    assert [r.code for r in results] == [0, 0]
    ran = [r for r in results if r.events("run.end")]
    busy = [r for r in results if r.events("lock.busy")]
    assert len(ran) == 1 and len(busy) == 1
    rec = busy[0].one("lock.busy")
    assert rec["lock_key"] == "s" and rec["on_busy"] == "skip"
    assert rec["holder_run_id"] == ran[0].one("run.start")["run_id"]
    assert not busy[0].events("run.start")


def test_different_params_run_in_parallel(rj):
    started, release = rj.dir / "started", rj.dir / "release"
    rj.write(f'[jobs.imp]\ncommand = {py(HOLD, str(started), str(release))}\n'
             f'lock_key = "cron.suppliers.import.supplier.{{s}}"\n[jobs.imp.params.s]\npattern = "[a-z]+"\n')  # fmt: skip
    procs = [rj.popen("imp", "s=acme"), rj.popen("imp", "s=globex")]
    # Each child holds on until released: both must be running at the same time to get here.
    assert wait_for(lambda: started.exists() and started.read_text() == "xx", timeout=30)
    release.write_text("go")
    results = [finish(p) for p in procs]
    assert all(r.code == 0 and r.events("run.end") for r in results)
    assert {r.one("run.start")["lock_key"] for r in results} == {
        "cron.suppliers.import.supplier.acme", "cron.suppliers.import.supplier.globex"}  # fmt: skip


def test_on_busy_fail_exits_75(rj):
    pidfile = sleeper_job(rj, seconds="2", extra='on_busy = "fail"')
    first = rj.popen("s")
    assert wait_for(pidfile.exists)
    r = rj.run("s")
    assert r.code == 75 and r.one("lock.busy")["on_busy"] == "fail"
    assert finish(first).code == 0


def test_on_busy_wait_gets_the_lock_or_gives_up(rj):
    pidfile = sleeper_job(rj, seconds="0.8", extra='on_busy = "wait"\nwait = "5s"')
    first = rj.popen("s")
    assert wait_for(pidfile.exists)
    r = rj.run("s")  # waits for the first to finish, then runs
    assert r.code == 0 and r.events("run.end")
    assert finish(first).code == 0
    sleeper_job(rj, seconds="3", extra='on_busy = "wait"\nwait = "300ms"')
    pidfile.unlink()
    first = rj.popen("s")
    assert wait_for(pidfile.exists)
    started = time.monotonic()
    r = rj.run("s")
    assert r.code == 75 and r.one("lock.busy")["on_busy"] == "wait"
    assert 0.25 < time.monotonic() - started < 2.5
    first.kill()
    first.wait()


def test_lock_is_held_across_retries(rj):
    code = "import sys, time; time.sleep(0.3); sys.exit(1)"
    rj.write(f'[jobs.r]\ncommand = {py(code)}\nretry = {{ attempts = 3, delay = "300ms" }}\non_busy = "fail"\n')
    first = rj.popen("r")
    time.sleep(0.1)
    seen_busy = 0
    while first.poll() is None:
        r = rj.run("r")
        seen_busy += r.code == 75
        time.sleep(0.1)
    assert finish(first).code == 1
    assert seen_busy >= 3  # every probe, during attempts and during backoff, found the lock held


def test_sigkill_of_runjob_keeps_the_lock_until_the_child_exits(rj):
    pidfile = sleeper_job(rj, seconds="2", extra='on_busy = "fail"')
    first = rj.popen("s")
    assert wait_for(pidfile.exists)
    child = int(pidfile.read_text())
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert alive(child)
    r = rj.run("s")
    assert r.code == 75, "a second run overlapped a live child"
    assert wait_for(lambda: not alive(child), timeout=10)
    r = rj.run("s")
    assert r.code == 0 and r.events("run.end")


def test_lock_file_left_by_a_crashed_run_never_blocks(rj):
    sleeper_job(rj, seconds="0")
    locks = rj.state / "locks"
    locks.mkdir(parents=True)
    (locks / "s.lock").write_text('{"pid": 999999, "run_id": "dead"}')
    r = rj.run("s")
    assert r.code == 0 and r.events("run.end")


def test_lock_holder_is_written_for_others_to_see(rj):
    pidfile = sleeper_job(rj, seconds="1.5")
    first = rj.popen("s")
    assert wait_for(pidfile.exists)
    from runjob.lock import held_locks

    held = held_locks(str(rj.state / "locks"))
    assert len(held) == 1 and held[0]["lock_key"] == "s" and held[0]["pid"] == first.pid
    assert finish(first).code == 0
    assert held_locks(str(rj.state / "locks")) == []


def test_flock_command_sees_the_same_lock(rj):
    """Interoperability: `flock(1)` on the lock file is blocked while runjob runs."""
    pidfile = sleeper_job(rj, seconds="1.5")
    first = rj.popen("s")
    assert wait_for(pidfile.exists)
    probe = subprocess.run(["flock", "-n", str(rj.state / "locks" / "s.lock"), "true"])
    assert probe.returncode == 1
    assert finish(first).code == 0
    assert PY and os.path.exists(rj.state / "locks" / "s.lock")
