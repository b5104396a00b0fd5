"""Timeouts and signals: the whole process group goes, grandchildren included."""

from __future__ import annotations

import signal

import pytest
from conftest import HOLD, PY, alive, finish, py, ready_within_timeout, wait_for

# The child starts a grandchild (same process group), then writes both pids (whole: aside,
# then renamed) and holds on until the release file exists. Its SIGTERM handling by mode:
# "default" dies, "ignore" ignores it (the grandchild inherits that), "note" writes
# TERM to PIDS.term and goes on holding.
FAMILY = (
    "import os, signal, subprocess, sys, time\n"
    "pids, release, mode = sys.argv[1:4]\n"
    "if mode == 'ignore': signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "if mode == 'note': signal.signal(signal.SIGTERM, lambda *a: open(pids + '.term', 'a').write('TERM'))\n"
    "g = subprocess.Popen(['sleep', '600'])\n"
    "open(pids + '.tmp', 'w').write('%d %d' % (os.getpid(), g.pid))\n"
    "os.rename(pids + '.tmp', pids)\n"
    "end = time.time() + 600\n"
    "while not os.path.exists(release) and time.time() < end: time.sleep(0.02)\n"
)


def family_job(rj, extra, mode="default"):
    pids, release = rj.dir / "pids", rj.dir / "release"
    rj.write(f"[jobs.f]\ncommand = {py(FAMILY, str(pids), str(release), mode)}\n{extra}\n")
    return pids, release


def family(pids):
    return tuple(map(int, pids.read_text().split()))


def gone(pids):
    return wait_for(lambda: not any(alive(pid) for pid in family(pids)))


def test_timeout_kills_child_and_grandchild_exit_124(rj):
    pids = rj.dir / "pids"

    def attempt(timeout):
        family_job(rj, f'timeout = "{timeout}"\nkill_grace = "1h"')
        return rj.run("f")  # with an hour of grace, ending at all means SIGTERM alone ended it

    r = ready_within_timeout(pids, attempt)
    assert r.code == 124
    end = r.one("run.end")
    assert end["status"] == "timeout" and end["exit_code"] == 124 and end["level"] == "error"
    assert r.one("run.attempt")["status"] == "timeout"
    assert gone(pids)


def test_child_ignoring_sigterm_is_killed_after_grace(rj):
    pids = rj.dir / "pids"

    def attempt(timeout):
        family_job(rj, f'timeout = "{timeout}"\nkill_grace = "200ms"', "ignore")
        return rj.run("f")

    r = ready_within_timeout(pids, attempt)
    assert r.code == 124 and r.one("run.end")["status"] == "timeout"
    assert gone(pids)  # the child and the grandchild both ignored SIGTERM: SIGKILL ended them


def test_kill_grace_is_waited_out_after_a_timeout(rj):
    pids = rj.dir / "pids"
    term = rj.dir / "pids.term"

    def attempt(timeout):
        term.unlink(missing_ok=True)
        _, release = family_job(rj, f'timeout = "{timeout}"\nkill_grace = "1h"', "note")
        proc = rj.popen("f")
        assert wait_for(lambda: (term.exists() and pids.exists()) or proc.poll() is not None, timeout=90)
        if pids.exists():
            # SIGTERM came and was noted; within the hour of grace nothing may kill the child.
            assert proc.poll() is None and alive(family(pids)[0])
            release.write_text("go")
        return finish(proc)

    r = ready_within_timeout(pids, attempt)
    assert r.code == 124 and r.one("run.end")["status"] == "timeout"
    assert term.read_text() == "TERM" and gone(pids)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signal_to_runjob_is_forwarded_and_exits_128_plus_n(rj, sig):
    pids, _ = family_job(rj, 'timeout = "1h"\nkill_grace = "1h"')
    proc = rj.popen("f")
    assert wait_for(pids.exists)
    proc.send_signal(sig)
    r = finish(proc)
    assert r.code == 128 + sig
    end = r.one("run.end")
    assert end["status"] == "killed" and end["exit_code"] == 128 + sig
    assert gone(pids)


def test_forwarded_signal_then_sigkill_after_grace(rj):
    pids, _ = family_job(rj, 'timeout = "1h"\nkill_grace = "200ms"', "ignore")
    proc = rj.popen("f")
    assert wait_for(pids.exists)
    proc.send_signal(signal.SIGTERM)
    r = finish(proc)
    assert r.code == 143 and r.one("run.end")["status"] == "killed"
    assert gone(pids)


def test_forwarded_signal_waits_out_the_grace(rj):
    pids, release = family_job(rj, 'timeout = "1h"\nkill_grace = "1h"', "note")
    term = rj.dir / "pids.term"
    proc = rj.popen("f")
    assert wait_for(pids.exists)
    proc.send_signal(signal.SIGTERM)
    assert wait_for(term.exists)  # forwarded to the child...
    assert proc.poll() is None and alive(family(pids)[0])  # ...which may finish within its grace
    release.write_text("go")
    r = finish(proc)
    assert r.code == 143 and r.one("run.end")["status"] == "killed"
    assert gone(pids)


def test_signal_during_backoff_ends_the_run(rj):
    attempts = rj.dir / "attempts"
    code = "import sys; open(sys.argv[1], 'a').write('x'); sys.exit(1)"
    rj.write(
        f'[jobs.r]\ncommand = {py(code, str(attempts))}\nretry = {{ attempts = 5, delay = "1h", max_delay = "1h" }}\n'
    )
    proc = rj.live("r")
    assert proc.wait_event("run.attempt")["retry_in_s"] == 3600.0  # in the backoff now
    proc.send_signal(signal.SIGTERM)
    r = proc.finish()  # an hour of backoff: ending at all means the signal cut it short
    assert r.code == 143 and r.one("run.end")["status"] == "killed"
    assert len(r.events("run.attempt")) == 1 and attempts.read_text() == "x"


def test_daemon_holding_the_pipe_does_not_hang_runjob(rj):
    daemon_pid, release = rj.dir / "daemon.pid", rj.dir / "release"
    code = (
        "import subprocess, sys; d = subprocess.Popen(sys.argv[1:], start_new_session=True); "
        "open(sys.argv[-2] + '.pid', 'w').write(str(d.pid)); print('bye')"
    )
    rj.write(f'[jobs.d]\ncommand = {py(code, PY, "-c", HOLD, str(rj.dir / "daemon"), str(release))}\ntimeout = "1h"\n')
    r = rj.run("d", timeout=30)  # the daemon holds runjob's pipes until released: only runjob can end this
    assert r.code == 0 and r.one("run.output")["line"] == "bye"
    daemon = int(daemon_pid.read_text())
    assert alive(daemon)
    release.write_text("go")
    assert wait_for(lambda: not alive(daemon))


def test_child_killed_by_a_signal_exits_128_plus_n(rj):
    rj.write(f"[jobs.k]\ncommand = {py('import os, signal; os.kill(os.getpid(), signal.SIGKILL)')}\n")
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
