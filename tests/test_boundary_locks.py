"""Locks at the edges real hosts hand over: who holds a lock, daemons that keep it, tmp
cleaners that delete it, reused pids, two registries on one host (SPEC 13)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3

from conftest import HOLD, alive, finish, py, race, wait_for

# The job's child starts a detached worker (own session, stdio on /dev/null) that keeps the
# lock descriptor it inherited, says its pid, and exits at once; the worker waits for `release`.
DAEMON = (
    "import os, sys, time\npid = os.fork()\nif pid == 0:\n    os.setsid()\n"
    "    null = os.open(os.devnull, os.O_RDWR)\n    for fd in (0, 1, 2): os.dup2(null, fd)\n"
    "    end = time.time() + 600\n"
    "    while not os.path.exists(sys.argv[2]) and time.time() < end: time.sleep(0.02)\n"
    "    os._exit(0)\nopen(sys.argv[1], 'w').write(str(pid))\n"
)


def hold_job(rj, name: str = "s") -> tuple:
    started, release = rj.dir / "started", rj.dir / "release"
    rj.write(f"[jobs.{name}]\ncommand = {py(HOLD, str(started), str(release))}\n")
    return started, release


def test_every_refused_run_names_the_holder_that_runs(rj):
    """The holder text is written before any reader can read it: with a previous holder's
    text in the file, six runs at once; every refused one names the one that runs."""
    started, release = hold_job(rj)
    release.write_text("go")
    first = rj.run("s")  # leaves its (dead) identity in the lock file
    release.unlink()
    results = race([rj.popen("s") for _ in range(6)], release)
    (winner,) = [r for r in results if r.events("run.start")]
    run_id, pid = winner.one("run.start")["run_id"], winner.one("run.start")["pid"]
    for r in results:
        if r is not winner:
            busy = r.one("lock.busy")
            assert (busy["holder_run_id"], busy["holder_pid"]) == (run_id, pid), busy
            assert busy["level"] == "info" and first.one("run.start")["run_id"] not in r.out


def test_a_daemon_left_with_the_lock_is_named_as_a_leftover(rj):
    pidfile, release = rj.dir / "worker.pid", rj.dir / "release"
    rj.write(f"[jobs.w]\ncommand = {py(DAEMON, str(pidfile), str(release))}\n")
    try:
        first = rj.run("w")
        assert first.one("run.end")["status"] == "success"
        worker, run_id = int(pidfile.read_text()), first.one("run.start")["run_id"]
        for _ in range(2):
            r = rj.run("w")
            busy = r.one("lock.busy")
            assert r.code == 0 and not r.events("run.start")
            assert busy["level"] == "warning" and busy["holder_pid"] == worker and busy["holder_run_id"] == run_id
            assert f"pid {worker}, a leftover of run {run_id}" in busy["message"]
            assert f"pid {first.one('run.start')['pid']}" not in busy["message"]
        (held,) = json.loads(rj.run("locks", "--json").out)
        assert held["pid"] == worker and held["leftover"] is True and held["run_id"] == run_id
        (status,) = json.loads(rj.run("status", "--json").out)
        assert status["locks"][0]["pid"] == worker
    finally:
        release.write_text("go")
    assert wait_for(lambda: not alive(worker))
    assert rj.run("w").one("run.end")["status"] == "success"


def test_a_sigkilled_runjob_never_lets_a_second_run_overlap_its_child(rj):
    started, release = hold_job(rj)
    proc = rj.popen("s")
    assert wait_for(started.exists)
    proc.kill()
    proc.wait()
    r = rj.run("s")
    busy = r.one("lock.busy")
    assert not r.events("run.start") and busy["level"] == "warning" and busy["holder_pid"] != proc.pid
    release.write_text("go")


def test_the_holder_re_creates_a_lock_file_a_cleaner_removed(rj):
    started, release = hold_job(rj)
    lock = rj.state / "locks" / "s.lock"
    first = rj.popen("s")
    assert wait_for(started.exists)
    old = os.stat(lock).st_ino
    lock.unlink()  # what systemd-tmpfiles --clean does to an aged lock file
    assert wait_for(lambda: lock.exists() and json.loads(rj.run("locks", "--json").out), timeout=30)
    held = json.loads(rj.run("locks", "--json").out)[0]
    r = rj.run("s")
    release.write_text("go")
    one = finish(first)
    assert held["run_id"] == one.one("run.start")["run_id"]
    assert r.one("lock.busy")["holder_run_id"] == one.one("run.start")["run_id"] and not r.events("run.start")
    assert one.one("lock.restored")["level"] == "warning" and one.one("run.end")["status"] == "success"
    assert started.read_text() == "x" and os.stat(lock).st_ino != old


def test_a_run_starting_before_the_holder_re_creates_its_lock_file_does_not_overlap(rj):
    """The holder is stopped (it cannot re-create its file): the history's running row,
    identified by pid and start time, keeps the second run out."""
    started, release = hold_job(rj)
    lock = rj.state / "locks" / "s.lock"
    first = rj.popen("s")
    assert wait_for(started.exists)
    os.kill(first.pid, signal.SIGSTOP)
    try:
        lock.unlink()
        r = rj.run("s")
    finally:
        os.kill(first.pid, signal.SIGCONT)
    release.write_text("go")
    one = finish(first)
    busy = r.one("lock.busy")
    assert r.code == 0 and not r.events("run.start") and started.read_text() == "x"
    assert (busy["holder_pid"], busy["holder_run_id"]) == (first.pid, one.one("run.start")["run_id"])
    assert one.one("run.end")["status"] == "success"


def test_a_reused_pid_is_not_taken_for_a_crashed_run(rj):
    started, release = hold_job(rj)
    proc = rj.popen("s")
    assert wait_for(started.exists)
    proc.kill()
    proc.wait()
    release.write_text("go")
    assert wait_for(lambda: not json.loads(rj.run("locks", "--json").out))
    # An unrelated live process (this test) now has the dead runjob's pid: what the kernel
    # does once pids wrap around. Its start time is not the run's.
    assert rj.run("history").code == 0  # the run's `running` row, folded into the store
    with sqlite3.connect(rj.state / "history.sqlite3") as db:
        db.execute("UPDATE runs SET pid = ?", (os.getpid(),))
    (row,) = json.loads(rj.run("history", "--json").out)
    assert row["status"] == "crashed"
    (status,) = json.loads(rj.run("status", "--json").out)
    assert status["status"] == "crashed"
    assert rj.run("s").one("run.end")["status"] == "success"  # the crashed row does not hold the key


def registry_dir(rj, name: str) -> str:
    d = rj.dir / name
    d.mkdir()
    started, release = rj.dir / f"{name}.started", rj.dir / "release"
    (d / "jobs.toml").write_text(f"[jobs.import-stock]\ncommand = {py(HOLD, str(started), str(release))}\n")
    return str(d / "jobs.toml")


def test_two_registries_without_state_dir_do_not_share_locks_or_history(rj):
    prod, staging = registry_dir(rj, "prod"), registry_dir(rj, "staging")
    env = {"XDG_STATE_HOME": str(rj.dir / "xdg"), "RUNJOB_CONFIG": prod}
    first = rj.popen("import-stock", env=env)
    assert wait_for((rj.dir / "prod.started").exists)
    (rj.dir / "release").write_text("go")  # staging's own child need not wait
    other = rj.run("--config", staging, "import-stock", env=env)
    assert other.one("run.end")["status"] == "success"
    one = finish(first)
    rows = json.loads(rj.run("history", "--json", env=env).out)
    assert [r["run_id"] for r in rows] == [one.one("run.start")["run_id"]]
    dirs = {
        json.loads(rj.run("--config", c, "run", "import-stock", "--dry-run", "--format", "json", env=env).out)[
            "state_dir"
        ]
        for c in (prod, staging)
    }
    assert len(dirs) == 2 and all(d.startswith(str(rj.dir / "xdg" / "runjob") + "/") for d in dirs)


def test_the_holder_re_creates_a_locks_dir_a_cleaner_removed(rj):
    started, release = hold_job(rj)
    first = rj.popen("s")
    assert wait_for(started.exists)
    (rj.state / "locks" / "s.lock").rename(rj.dir / "moved.lock")
    (rj.state / "locks").rmdir()
    assert wait_for(lambda: json.loads(rj.run("locks", "--json").out), timeout=30)
    assert rj.run("s").one("lock.busy")["holder_pid"] == first.pid
    release.write_text("go")
    assert finish(first).one("lock.restored")["lock_key"] == "s"
