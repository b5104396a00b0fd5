"""History store, history/status/stale/locks commands."""

from __future__ import annotations

import json
import signal
import sqlite3
import stat
import time

from conftest import HOLD, HOLD_PID, Env, alive, finish, py, wait_for


def holding(rj, name="started"):
    """A command whose child marks `name` started and holds on until `release` exists."""
    return py(HOLD, str(rj.dir / name), str(rj.dir / "release")), rj.dir / name, rj.dir / "release"


def rows(rj) -> list[dict]:
    r = rj.run("history", "--json", "--limit", "1000")
    assert r.code == 0, r.err
    return json.loads(r.out)


def test_a_row_is_written_at_start_and_finished_at_end(rj):
    command, flag, release = holding(rj)
    rj.write(f'[jobs.s]\ncommand = {command}\n[jobs.s.params.p]\npattern = "[a-z]+"\ndefault = "x"\n')
    proc = rj.popen("s", "p=abc", env={"RUNJOB_CORRELATION_ID": "corr-1"})
    assert wait_for(flag.exists)
    held_from = time.monotonic()  # the child runs at least from here...
    (running,) = rows(rj)
    assert running["status"] == "running" and running["ended_at"] is None
    held_for = time.monotonic() - held_from  # ...to here: a lower bound of its duration, whatever the load
    release.write_text("go")
    r = finish(proc)
    (done,) = rows(rj)
    assert done["status"] == "success" and done["exit_code"] == 0 and done["attempts"] == 1
    assert done["run_id"] == r.one("run.end")["run_id"] and done["correlation_id"] == "corr-1"
    assert done["params"] == {"p": "abc"} and done["pid"] == proc.pid and done["host"]
    assert done["duration_s"] >= round(held_for, 3) - 0.001 and done["started_at"] < done["ended_at"]
    assert done["lock_key"] == "s" and done["duration_s"] == r.one("run.end")["duration_s"]


def test_failure_row_keeps_the_stderr_tail(rj):
    boom = py("import sys; print('boom', file=sys.stderr); sys.exit(4)")
    rj.write(f"[jobs.f]\ncommand = {boom}\n")
    rj.run("f")
    (row,) = rows(rj)
    assert row["status"] == "failure" and row["exit_code"] == 4 and row["stderr_tail"] == "boom\n"


def test_a_run_whose_runjob_died_shows_as_crashed(rj):
    pidfile, release = rj.dir / "child.pid", rj.dir / "release"
    rj.write(f'[jobs.s]\ncommand = {py(HOLD_PID, str(pidfile), str(release))}\nmax_age = "1h"\n')
    proc = rj.popen("s")
    assert wait_for(pidfile.exists)
    child = int(pidfile.read_text())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    release.write_text("go")  # the child finishes on its own
    assert wait_for(lambda: not alive(child))
    (row,) = rows(rj)
    assert row["status"] == "crashed"
    assert json.loads(rj.run("history", "--status", "crashed", "--json").out)[0]["run_id"] == row["run_id"]
    status = {s["job"]: s for s in json.loads(rj.run("status", "--json").out)}
    assert status["s"]["status"] == "crashed" and status["s"]["stale"] is True


def test_twenty_concurrent_runs_all_recorded(rj):
    rj.write('[jobs.c]\ncommand = ["true"]\nlock_key = "c.{n}"\n[jobs.c.params.n]\npattern = "[0-9]+"\n')
    procs = [rj.popen("c", f"n={i}") for i in range(20)]
    results = [finish(p) for p in procs]
    assert [r.code for r in results] == [0] * 20, [r.err for r in results if r.code]
    assert all(r.err == "" for r in results)
    recorded = rows(rj)
    assert len(recorded) == 20 and {r["status"] for r in recorded} == {"success"}


def test_first_runs_create_the_store_together(tmp_path):
    """Many runs at once on a fresh state dir: the store is set up once, none fails."""
    for round_ in range(6):
        env = Env(tmp_path / f"round{round_}")
        env.dir.mkdir()
        env.write('[jobs.c]\ncommand = ["true"]\nlock_key = "c.{n}"\n[jobs.c.params.n]\npattern = "[0-9]+"\n')
        results = [finish(p) for p in [env.popen("c", f"n={i}") for i in range(6)]]
        assert [r.code for r in results] == [0] * 6, [r.err for r in results if r.code]
        assert len(rows(env)) == 6


def test_skipped_runs_are_recorded_as_skipped(rj):
    command, flag, release = holding(rj)
    rj.write(f"[jobs.s]\ncommand = {command}\n")
    proc = rj.popen("s")
    assert wait_for(flag.exists)
    assert rj.run("s").code == 0
    release.write_text("go")
    finish(proc)
    assert sorted(r["status"] for r in rows(rj)) == ["skipped", "success"]


def test_history_filters(rj):
    code = "import sys; sys.exit(int(sys.argv[1]))"
    rj.write(
        f'[jobs.a]\ncommand = {py(code, "{c}")}\n[jobs.a.params.c]\npattern = "[0-9]"\n[jobs.b]\ncommand = ["true"]\n'
    )
    for c in "0101":
        rj.run("a", f"c={c}")
    rj.run("b")
    assert len(rows(rj)) == 5
    assert len(json.loads(rj.run("history", "a", "--json").out)) == 4
    assert len(json.loads(rj.run("history", "--status", "failure", "--json").out)) == 2
    assert len(json.loads(rj.run("history", "--limit", "2", "--json").out)) == 2
    newest = json.loads(rj.run("history", "--limit", "1", "--json").out)[0]
    assert newest["job"] == "b"
    assert len(json.loads(rj.run("history", "--since", "1h", "--json").out)) == 5
    assert rj.run("history", "--status", "bogus").code == 2
    assert rj.run("history", "nope").code == 2


def test_retention_purges_old_rows_when_the_journal_is_folded(rj):
    rj.write('[defaults]\nstate_dir = "state"\nhistory_keep = "1d"\n[jobs.t]\ncommand = ["true"]\n')
    rj.run("t")
    rj.run("history")  # the store, with the first run's row
    db = sqlite3.connect(rj.state / "history.sqlite3")
    old = time.time() - 3 * 86400
    db.executemany(
        "INSERT INTO runs (run_id, job, started, ended, status) VALUES (?, 't', ?, ?, 'success')",
        [(f"old-{i}", old, old + 1) for i in range(50)],
    )
    db.commit()
    rj.run("t")
    assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 51  # the run wrote only its journal
    rj.run("history")  # its fold purges with the history_keep the run's end carried
    assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 2
    db.close()


def test_schema_is_versioned_and_migrates(rj):
    rj.write('[jobs.t]\ncommand = ["true"]\n')
    rj.state.mkdir()
    db = sqlite3.connect(rj.state / "history.sqlite3")
    db.execute("CREATE TABLE unrelated (x)")  # an old file with user_version 0
    db.commit()
    assert rj.run("t").code == 0
    assert rj.run("history").code == 0  # readers open the store (runs write the journal)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 4  # 2: pid start times, 3: pipeline runs, 4: run_latest
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    r = rj.run("history")
    assert r.code == 125 and "newer than this runjob knows" in r.err and str(rj.state / "history.sqlite3") in r.err


def test_a_corrupt_store_is_a_clear_error_for_its_readers_and_loses_no_run(rj):
    """The store is the readers' business: a run still runs and keeps its row in the journal;
    `history` says what is wrong in one line, and shows the run once the file is moved aside."""
    touch = py("open('ran', 'w')")
    rj.write(f"[jobs.t]\ncommand = {touch}\n")
    rj.state.mkdir()
    (rj.state / "history.sqlite3").write_bytes(b"this is not a database" * 100)
    run = rj.run("t")
    assert run.code == 0 and (rj.dir / "ran").exists()
    r = rj.run("history", "--json")
    assert r.code == 125 and "history store" in r.err and "history.sqlite3" in r.err
    assert len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err
    (rj.state / "history.sqlite3").rename(rj.state / "broken.sqlite3")
    rows = json.loads(rj.run("history", "--json").out)
    assert [(row["run_id"], row["status"]) for row in rows] == [(run.one("run.end")["run_id"], "success")]


def test_status_shows_last_run_next_due_stale_and_locks(rj):
    command, flag, release = holding(rj)
    rj.write(
        f'[jobs.ok]\ncommand = ["true"]\nschedule = "*/5 * * * *"\nmax_age = "1h"\n'
        f'[jobs.never]\ncommand = ["true"]\nmax_age = "1h"\n'
        f'[jobs.busy]\ncommand = {command}\nlock_key = "b.{{k}}"\n'
        f'[jobs.busy.params.k]\npattern = "[a-z]+"\n'
    )
    rj.run("ok")
    proc = rj.popen("busy", "k=acme")
    assert wait_for(flag.exists)
    status = {s["job"]: s for s in json.loads(rj.run("status", "--json").out)}
    release.write_text("go")
    finish(proc)
    ok = status["ok"]
    assert ok["status"] == "success" and ok["stale"] is False and ok["last_success_at"] and ok["duration_s"] >= 0
    assert ok["next_due"][14:16] in ("00", "05", "10", "15", "20", "25", "30", "35", "40", "45", "50", "55")
    assert status["never"]["status"] is None and status["never"]["stale"] is True
    (held,) = status["busy"]["locks"]
    assert held["lock_key"] == "b.acme" and held["pid"] == proc.pid and held["run_id"]
    assert status["busy"]["status"] == "running" and status["busy"]["stale"] is None


def test_stale_watchdog(rj):
    rj.write(
        '[jobs.fresh]\ncommand = ["true"]\nmax_age = "1h"\n[jobs.late]\ncommand = ["true"]\nmax_age = "1s"\n'
        '[jobs.never]\ncommand = ["false"]\nmax_age = "1h"\n[jobs.free]\ncommand = ["true"]\n'
    )
    for job in ("fresh", "late", "never", "free"):
        rj.run(job)
    rj.run("history")  # the runs' rows folded into the store
    db = sqlite3.connect(rj.state / "history.sqlite3")  # late's success, made ten seconds old
    db.execute("UPDATE runs SET started = started - 10, ended = ended - 10 WHERE job = 'late'")
    db.commit()
    db.close()
    r = rj.run("stale")
    assert r.code == 1
    stale = {rec["job"]: rec for rec in r.events("job.stale")}
    assert set(stale) == {"late", "never"}
    assert stale["never"]["reason"] == "never succeeded" and stale["late"]["age_s"] >= 10
    assert stale["late"]["level"] == "error" and stale["late"]["max_age_s"] == 1.0
    rj.write('[jobs.fresh]\ncommand = ["true"]\nmax_age = "1h"\n')
    assert rj.run("stale").code == 0


def test_locks_command(rj):
    command, flag, release = holding(rj)
    rj.write(f"[jobs.s]\ncommand = {command}\n")
    assert json.loads(rj.run("locks", "--json").out) == []
    proc = rj.popen("s")
    assert wait_for(flag.exists)
    (held,) = json.loads(rj.run("locks", "--json").out)
    release.write_text("go")
    r = finish(proc)
    assert held["lock_key"] == "s" and held["pid"] == proc.pid and held["job"] == "s"
    assert held["run_id"] == r.one("run.start")["run_id"] and held["since"]
    assert json.loads(rj.run("locks", "--json").out) == []


def test_a_run_end_the_store_refuses_is_kept_in_the_journal_never_left_running(rj):
    """Folding the run's end fails (here a trigger refuses every UPDATE): the reader says so
    in one line, the end stays in the journal, and the next reader writes it into the store."""
    started, release = rj.dir / "started", rj.dir / "release"
    rj.write(f"[jobs.s]\ncommand = {py(HOLD, str(started), str(release))}\n")
    proc = rj.popen("s")
    assert wait_for(started.exists, timeout=60)  # the run's `running` row is written before the child starts
    assert [row["status"] for row in json.loads(rj.run("history", "--json").out)] == ["running"]
    db = sqlite3.connect(rj.state / "history.sqlite3", isolation_level=None)
    db.execute("CREATE TRIGGER refuse BEFORE UPDATE ON runs BEGIN SELECT RAISE(ABORT, 'refused'); END")
    release.write_text("go")
    r = finish(proc)
    assert r.code == 0 and r.one("run.end")["status"] == "success" and r.err == ""
    refused = rj.run("history", "--json")
    assert refused.code == 125 and "refused" in refused.err and "Traceback" not in refused.err
    journal = rj.state / "history.journal"
    assert stat.S_IMODE(journal.stat().st_mode) == 0o600 and r.one("run.end")["run_id"] in journal.read_text()
    db.execute("DROP TRIGGER refuse")
    db.close()
    rows = json.loads(rj.run("history", "--json").out)
    assert [(row["run_id"], row["status"], row["exit_code"]) for row in rows] == [
        (r.one("run.end")["run_id"], "success", 0)
    ]
    assert journal.read_text() == ""
