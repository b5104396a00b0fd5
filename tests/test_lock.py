"""Overlap locks: one run per key, parallel keys, on_busy modes, SIGKILL safety."""

from __future__ import annotations

import os
import signal
import subprocess

from conftest import HOLD, HOLD_PID, PY, Opens, alive, finish, py, race, wait_for

from runjob.locks.lock import held_locks, is_held


def holding_job(rj, name="s", extra="", params=""):
    """A job whose child writes its pid to `NAME.pid` and holds on until `release` exists."""
    pidfile, release = rj.dir / f"{name}.pid", rj.dir / "release"
    rj.write(f"[jobs.{name}]\ncommand = {py(HOLD_PID, str(pidfile), str(release))}\n{extra}\n{params}")
    return pidfile, release


def test_two_concurrent_runs_of_one_key_only_one_runs(rj):
    release = rj.dir / "release"
    rj.write(f"[jobs.s]\ncommand = {py(HOLD, str(rj.dir / 'started'), str(release))}\n")
    results = race([rj.popen("s") for _ in range(2)], release)
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
    rj.write(
        f"[jobs.imp]\ncommand = {py(HOLD, str(started), str(release))}\n"
        f'lock_key = "cron.suppliers.import.supplier.{{s}}"\n[jobs.imp.params.s]\npattern = "[a-z]+"\n'
    )
    procs = [rj.popen("imp", "s=acme"), rj.popen("imp", "s=globex")]
    # Each child holds on until released: both must be running at the same time to get here.
    assert wait_for(lambda: started.exists() and started.read_text() == "xx", timeout=30)
    release.write_text("go")
    results = [finish(p) for p in procs]
    assert all(r.code == 0 and r.events("run.end") for r in results)
    assert {r.one("run.start")["lock_key"] for r in results} == {
        "cron.suppliers.import.supplier.acme",
        "cron.suppliers.import.supplier.globex",
    }


def test_on_busy_fail_exits_75(rj):
    pidfile, release = holding_job(rj, extra='on_busy = "fail"')
    first = rj.popen("s")
    assert wait_for(pidfile.exists)
    r = rj.run("s")
    assert r.code == 75 and r.one("lock.busy")["on_busy"] == "fail"
    release.write_text("go")
    assert finish(first).code == 0


def test_on_busy_wait_gets_the_lock_once_it_is_free(rj):
    pidfile, release = holding_job(rj, extra='on_busy = "wait"\nwait = "1h"')
    first = rj.popen("s")
    assert wait_for(pidfile.exists)
    opens = Opens(rj.state / "locks" / "s.lock")
    try:
        second = rj.popen("s")
        # Two opens of the lock file: the second run has tried and failed at least once, so
        # it is waiting, not merely late. Only then is the first one released.
        assert wait_for(lambda: opens.seen() >= 2, timeout=30)
    finally:
        opens.close()
    assert second.poll() is None
    first_child = int(pidfile.read_text())
    pidfile.unlink()
    release.write_text("go")
    assert finish(first).code == 0
    r = finish(second)  # it got the lock when the first ended, and ran its own child
    assert r.code == 0 and r.one("run.end")["status"] == "success" and not r.events("lock.busy")
    assert int(pidfile.read_text()) != first_child


def test_on_busy_wait_gives_up_after_its_wait(rj):
    pidfile, release = holding_job(rj, extra='on_busy = "wait"\nwait = "300ms"')
    first = rj.popen("s")
    assert wait_for(pidfile.exists)
    r = rj.run("s")  # the lock stays held throughout: only giving up can end this run
    assert r.code == 75 and r.one("lock.busy")["on_busy"] == "wait" and not r.events("run.start")
    assert first.poll() is None
    release.write_text("go")
    assert finish(first).code == 0


# Each attempt marks itself started, holds on until its own release file exists, and fails.
ATTEMPT = (
    "import os, sys, time\nn = os.environ['RUNJOB_ATTEMPT']\nopen(sys.argv[1] + n, 'w').close()\n"
    "end = time.time() + 600\n"
    "while not os.path.exists(sys.argv[2] + n) and time.time() < end: time.sleep(0.02)\nsys.exit(1)\n"
)


def test_lock_is_held_during_every_attempt(rj):
    started, release = rj.dir / "started-", rj.dir / "release-"
    rj.write(
        f"[jobs.r]\ncommand = {py(ATTEMPT, str(started), str(release))}\n"
        f'retry = {{ attempts = 3, delay = "0s" }}\non_busy = "fail"\n'
    )
    first = rj.popen("r")
    for n in "123":
        assert wait_for(lambda n=n: os.path.exists(f"{started}{n}"))
        assert rj.run("r").code == 75, f"the lock was free during attempt {n}"
        open(f"{release}{n}", "w").close()
    r = finish(first)
    assert r.code == 1 and r.one("run.end")["attempts"] == 3


def test_lock_is_held_during_the_backoff(rj):
    started, release = rj.dir / "started-", rj.dir / "release-"
    rj.write(
        f"[jobs.r]\ncommand = {py(ATTEMPT, str(started), str(release))}\n"
        f'retry = {{ attempts = 2, delay = "1h", max_delay = "1h" }}\non_busy = "fail"\n'
    )
    first = rj.live("r")
    assert wait_for(lambda: os.path.exists(f"{started}1"))
    open(f"{release}1", "w").close()
    assert first.wait_event("run.attempt")["retry_in_s"] == 3600.0  # now waiting to retry
    assert rj.run("r").code == 75, "the lock was free during the backoff"
    first.send_signal(signal.SIGTERM)
    assert first.finish().code == 143
    assert not is_held(str(rj.state / "locks" / "r.lock"))  # released at the end of the run


def test_sigkill_of_runjob_keeps_the_lock_until_the_child_exits(rj):
    pidfile, release = holding_job(rj, extra='on_busy = "fail"')
    first = rj.popen("s")
    assert wait_for(pidfile.exists)
    child = int(pidfile.read_text())
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert alive(child)
    r = rj.run("s")
    assert r.code == 75, "a second run overlapped a live child"
    release.write_text("go")
    assert wait_for(lambda: not alive(child))
    r = rj.run("s")
    assert r.code == 0 and r.events("run.end")


def test_lock_file_left_by_a_crashed_run_never_blocks(rj):
    rj.write('[jobs.s]\ncommand = ["true"]\n')
    locks = rj.state / "locks"
    locks.mkdir(parents=True)
    (locks / "s.lock").write_text('{"pid": 999999, "run_id": "dead"}')
    r = rj.run("s")
    assert r.code == 0 and r.events("run.end")


def test_lock_holder_is_written_for_others_to_see(rj):
    pidfile, release = holding_job(rj)
    first = rj.popen("s")
    assert wait_for(pidfile.exists)
    held = held_locks(str(rj.state / "locks"))
    assert len(held) == 1 and held[0]["lock_key"] == "s" and held[0]["pid"] == first.pid
    release.write_text("go")
    assert finish(first).code == 0
    assert held_locks(str(rj.state / "locks")) == []


def test_flock_command_sees_the_same_lock(rj):
    """Interoperability: `flock(1)` on the lock file is blocked while runjob runs."""
    pidfile, release = holding_job(rj)
    first = rj.popen("s")
    assert wait_for(pidfile.exists)
    probe = subprocess.run(["flock", "-n", str(rj.state / "locks" / "s.lock"), "true"])
    assert probe.returncode == 1
    release.write_text("go")
    assert finish(first).code == 0
    assert PY and os.path.exists(rj.state / "locks" / "s.lock")
