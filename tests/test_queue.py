"""The queue (SPEC section 9) on the state dir's SQLite: real worker processes, real runs.

The scenarios take the backend's `[defaults]` lines, so tests/test_queue_redis.py runs the
same ones against a real redis-server. Nothing here waits on the clock: tests synchronise
on worker exits (`--burst`, `--max-jobs`), marker files and records.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from conftest import HOLD, PY, Env, finish, py, q, wait_for

APPEND = "import sys\nopen(sys.argv[1], 'a').write(sys.argv[2] + '\\n')\n"


def setup(rj: Env, backend: str = "", extra: str = "") -> Path:
    """Jobs: `mark` appends its param `n` to the returned file (lock per n), `fail` exits 3
    with a line on stderr, `hold` marks `started` and waits for `release`."""
    marks = rj.dir / "marks"
    rj.write(
        f"[defaults]\nstate_dir = {q(str(rj.state))}\n{backend}\n\n"
        f'[jobs.mark]\ncommand = {py(APPEND, str(marks), "{n}")}\nlock_key = "mark-{{n}}"\n'
        f'params = {{ n = {{ pattern = "[0-9]+" }} }}\n\n'
        f'[jobs.fail]\ncommand = [{q(PY)}, "-c", "import sys; sys.stderr.write(\'boom on stderr\\\\n\'); sys.exit(3)"]\n\n'
        f"[jobs.hold]\ncommand = {py(HOLD, str(rj.dir / 'started'), str(rj.dir / 'release'))}\n{extra}\n"
    )
    return marks


def enqueue(rj: Env, *args: str) -> str:
    r = rj.run("enqueue", *args)
    assert r.code == 0, r.err
    return r.one("queue.enqueued")["queue_id"]


def state(rj: Env) -> dict:
    r = rj.run("queue", "--json")
    assert r.code == 0, r.err
    return json.loads(r.out)


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def scenario_priorities_delays_dead_letter(rj: Env, backend: str) -> None:
    marks = setup(rj, backend)
    enqueue(rj, "mark", "n=1")
    enqueue(rj, "mark", "n=2", "--priority", "5")
    enqueue(rj, "mark", "n=3")
    enqueue(rj, "mark", "n=4", "--priority", "5")
    enqueue(rj, "mark", "n=9", "--delay", "1h")
    enqueue(rj, "mark", "n=8", "--at", "2020-01-01T00:00:00Z")  # already due
    dead = enqueue(rj, "fail", "--priority", "-1")
    r = rj.run("worker", "--burst")
    assert r.code == 0, r.err
    assert lines(marks) == ["2", "4", "1", "3", "8"]  # highest priority first, then oldest; n=9 not yet
    entries = {e["id"]: e for e in state(rj)["entries"]}
    assert entries[dead]["state"] == "dead" and entries[dead]["exit_code"] == 3
    assert "boom on stderr" in entries[dead]["stderr_tail"]
    assert [e["params"] for e in entries.values() if e["state"] == "pending"] == [{"n": "9"}]
    health = state(rj)["health"]
    assert health["dead"] == 1 and health["depth"] == {"mark": {"0": 1}}
    # retry: the dead entry is pending again under the same id, and dead again after its run
    assert rj.run("queue", "retry", dead).code == 0
    assert {e["id"]: e["state"] for e in state(rj)["entries"]}[dead] == "pending"
    assert rj.run("worker", "--burst").code == 0
    assert {e["id"]: e["state"] for e in state(rj)["entries"]}[dead] == "dead"
    assert rj.run("queue", "drop", dead).code == 0
    assert dead not in {e["id"] for e in state(rj)["entries"]}
    assert rj.run("queue", "drop", dead).code == 2


def test_priorities_delays_dead_letter_retry_drop(rj):
    scenario_priorities_delays_dead_letter(rj, "")


def scenario_pause_resume_priority(rj: Env, backend: str) -> None:
    marks = setup(rj, backend)
    first = enqueue(rj, "mark", "n=1")
    enqueue(rj, "mark", "n=2")
    assert rj.run("queue", "priority", first, "--", "-3").code == 0
    assert rj.run("queue", "pause", "mark").code == 0
    fail = enqueue(rj, "fail")
    assert rj.run("worker", "--burst").code == 0  # only `fail` may be taken
    assert lines(marks) == []
    assert state(rj)["health"]["paused"] == ["mark"]
    assert rj.run("queue", "pause").code == 0  # all
    assert rj.run("queue", "resume", "mark").code == 0  # resuming one job lifts "all" too
    assert rj.run("worker", "--burst").code == 0
    assert lines(marks) == ["2", "1"]  # n=1 was lowered below n=2
    assert [e["id"] for e in state(rj)["entries"]] == [fail]


def test_pause_resume_and_priority_change(rj):
    scenario_pause_resume_priority(rj, "")


def scenario_exactly_once(rj: Env, backend: str, workers: int = 4) -> None:
    marks = setup(rj, backend)
    for n in range(40):
        enqueue(rj, "mark", f"n={n}")
    procs = [rj.popen("worker", "--burst", "--concurrency", "3") for _ in range(workers)]
    results = [finish(p) for p in procs]
    assert [r.code for r in results] == [0] * workers, [r.err for r in results]
    assert sorted(lines(marks), key=int) == [str(n) for n in range(40)]  # each once, none lost
    taken = [r["queue_id"] for res in results for r in res.events("queue.taken")]
    assert len(taken) == len(set(taken)) == 40
    assert state(rj)["entries"] == []


def test_several_workers_run_each_entry_exactly_once(rj):
    scenario_exactly_once(rj, "")


def scenario_killed_worker(rj: Env, backend: str) -> None:
    """A worker SIGKILLed mid-run loses nothing: once the lease lapses another worker runs the entry."""
    setup(rj, backend + '\nqueue_lease = "1s"')
    started, release = rj.dir / "started", rj.dir / "release"
    entry = enqueue(rj, "hold")
    first = rj.popen("worker", start_new_session=True)
    assert wait_for(lambda: started.exists())
    os.killpg(first.pid, signal.SIGKILL)  # the worker and its runjob; the job's own group holds on
    first.wait()
    release.write_text("go")  # the orphaned child ends, and with it the first run
    second = finish(rj.popen("worker", "--max-jobs", "1"))
    assert second.code == 0, second.err
    assert [r["queue_id"] for r in second.events("queue.taken")] == [entry]
    assert started.read_text() == "xx"  # the child ran twice: the entry was not lost
    assert [r["queue_id"] for r in second.events("queue.done")] == [entry]
    assert state(rj)["entries"] == []


def test_sigkilled_worker_entry_runs_again(rj):
    scenario_killed_worker(rj, "")


def test_sigterm_finishes_runs_in_hand_takes_no_new_one(rj):
    marks = setup(rj)
    started, release = rj.dir / "started", rj.dir / "release"
    held = enqueue(rj, "hold")
    later = enqueue(rj, "mark", "n=1")
    worker = rj.popen("worker")
    assert wait_for(lambda: started.exists())
    health = state(rj)["health"]
    assert len(health["workers"]) == 1 and health["running"] == 1 and health["depth"] == {"mark": {"0": 1}}
    worker.send_signal(signal.SIGTERM)
    release.write_text("go")
    r = finish(worker)
    assert r.code == 0, r.err
    assert [e["queue_id"] for e in r.events("queue.done")] == [held]
    assert lines(marks) == [] and [e["id"] for e in state(rj)["entries"]] == [later]
    assert state(rj)["health"]["workers"] == []


def test_sigterm_stops_runs_after_stop_grace_and_puts_them_back(rj):
    setup(rj, 'stop_grace = "0s"')
    held = enqueue(rj, "hold")
    worker = rj.popen("worker")
    assert wait_for(lambda: (rj.dir / "started").exists())
    worker.send_signal(signal.SIGTERM)
    r = finish(worker)
    assert r.code == 0, r.err
    assert [e["queue_id"] for e in r.events("queue.released")] == [held]
    assert [(e["id"], e["state"]) for e in state(rj)["entries"]] == [(held, "pending")]


def test_enqueue_checks_params_and_flags(rj):
    setup(rj)
    for args in (
        ["mark", "n=x"],
        ["mark"],
        ["nope"],
        ["mark", "n=1", "m=2"],
        ["mark", "n=1", "--delay", "soon"],
        ["mark", "n=1", "--delay", "1m", "--at", "2030-01-01T00:00:00Z"],
        ["mark", "n=1", "--priority", "5000"],
    ):
        r = rj.run("enqueue", *args)
        assert r.code == 2 and r.err.startswith("runjob: ") and "Traceback" not in r.err, (args, r.err)
    assert state(rj)["entries"] == []
    r = rj.run("enqueue", "mark", "n=7", "--priority", "2")
    rec = r.one("queue.enqueued")
    assert rec["job"] == "mark" and rec["params"] == {"n": "7"} and rec["priority"] == 2 and rec["queue_id"]
    assert rj.run("queue", "retry", rec["queue_id"]).code == 2  # not dead
    assert rj.run("queue", "pause", "nope").code == 2


def test_queue_store_is_private(rj):
    setup(rj)
    enqueue(rj, "mark", "n=1")
    assert (rj.state / "queue.sqlite3").stat().st_mode & 0o777 == 0o600


def test_tick_with_dispatch_queue_enqueues(rj):
    marks = rj.dir / "marks"
    rj.write(
        f"[defaults]\nstate_dir = {q(str(rj.state))}\n\n"
        f'[jobs.every]\ncommand = {py(APPEND, str(marks), "x")}\nschedule = "* * * * *"\ndispatch = "queue"\n'
    )
    r = rj.run("tick", "--at", "2026-11-23T02:58:00+00:00")
    assert r.code == 0, r.err
    queued = r.one("queue.enqueued")["queue_id"]
    assert r.one("tick")["started"][0]["queue_id"] == queued
    assert not marks.exists()
    assert [e["id"] for e in state(rj)["entries"]] == [queued]
    assert rj.run("worker", "--burst").code == 0
    assert lines(marks) == ["x"]


def test_metrics_file_gets_queue_depth_and_dead_count(rj):
    setup(rj, f"metrics_file = {q(str(rj.dir / 'metrics.prom'))}")
    enqueue(rj, "fail")
    assert rj.run("worker", "--burst").code == 0
    enqueue(rj, "mark", "n=1", "--priority", "2")
    enqueue(rj, "mark", "n=2", "--priority", "2")
    assert rj.run("mark", "n=3").code == 0  # any run rewrites the metrics file
    text = (rj.dir / "metrics.prom").read_text()
    assert 'runjob_queue_depth{job="mark",priority="2"} 2' in text.splitlines()
    assert "runjob_queue_dead 1" in text.splitlines()


def test_bad_queue_backend_is_a_config_error(rj):
    setup(rj, 'queue_backend = "http://example.com"')
    r = rj.run("enqueue", "mark", "n=1")
    assert r.code == 78 and "defaults.queue_backend" in r.err and "Traceback" not in r.err


def test_a_forked_run_does_not_hold_the_queue_gate(rj):
    """The writers' gate is an flock on queue.sqlite3.lock: a forked run that kept its
    descriptor would keep it held after its worker died inside a transaction."""
    fds = rj.dir / "fds"
    probe = (
        "import os, sys\nparent = os.getppid()\n"
        "names = [os.readlink(f'/proc/{parent}/fd/{fd}') for fd in os.listdir(f'/proc/{parent}/fd')]\n"
        "open(sys.argv[1], 'w').write('\\n'.join(names))\n"
    )
    setup(rj, extra=f"[jobs.probe]\ncommand = {py(probe, str(fds))}\n")
    enqueue(rj, "probe")
    r = rj.run("worker", "--burst")
    assert r.code == 0, r.err
    held = fds.read_text().splitlines()  # what the forked runjob (the probe's parent) has open
    assert any(name.endswith("locks/probe.lock") for name in held), held  # it is the run's process
    assert not [name for name in held if name.endswith("queue.sqlite3.lock")], held
