"""The history journal: runs append their rows to state_dir/history.journal and never open
SQLite; readers fold the journal into the store first, so they see every run."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import uuid

from conftest import HOLD, HOLD_PID, PY, RUNJOB, alive, finish, py, wait_for

JOURNAL = "history.journal"


def store_rows(rj, where: str = "1") -> list[tuple]:
    """The store's rows as SQLite has them, read without runjob (so nothing is folded)."""
    db = sqlite3.connect(rj.state / "history.sqlite3")
    try:
        return db.execute(f"SELECT run_id, job, status FROM runs WHERE {where} ORDER BY started").fetchall()
    finally:
        db.close()


def journal_rows(rj) -> list[dict]:
    return [json.loads(line) for line in (rj.state / JOURNAL).read_text().splitlines()]


def test_a_run_never_loads_sqlite_and_a_reader_sees_it(rj):
    rj.write('[jobs.t]\ncommand = ["true"]\n')
    modules, _ = rj.imported("t")
    assert "_sqlite3" not in modules and "sqlite3" not in modules
    assert not (rj.state / "history.sqlite3").exists()
    rows = journal_rows(rj)
    assert [r["status"] for r in rows] == ["running", "success"] and rows[0]["run_id"] == rows[1]["run_id"]
    assert (rj.state / JOURNAL).stat().st_mode & 0o777 == 0o600
    shown = json.loads(rj.run("history", "--json").out)
    assert [(r["run_id"], r["status"]) for r in shown] == [(rows[0]["run_id"], "success")]
    assert (rj.state / JOURNAL).read_bytes() == b""  # folded: the run ended, nothing is kept
    assert store_rows(rj) == [(rows[0]["run_id"], "t", "success")]


def test_a_live_run_s_line_stays_in_the_journal_across_a_fold(rj, tmp_path):
    started, release = tmp_path / "started", tmp_path / "release"
    rj.write(f'[jobs.slow]\ncommand = ["{PY}", "-c", {json.dumps(HOLD)}, "{started}", "{release}"]\n')
    proc = rj.popen("slow")
    assert wait_for(started.exists)
    listed = json.loads(rj.run("history", "--json").out)
    assert [r["status"] for r in listed] == ["running"]
    kept = journal_rows(rj)  # the lock's backup reads the journal only: the live run must be there
    assert [(r["job"], r["status"]) for r in kept] == [("slow", "running")]
    assert store_rows(rj) == [(kept[0]["run_id"], "slow", "running")]
    release.write_text("go")
    assert finish(proc).code == 0
    assert [r["status"] for r in json.loads(rj.run("history", "--json").out)] == ["success"]
    assert (rj.state / JOURNAL).read_bytes() == b""


def test_a_cleaned_lock_file_is_backed_up_by_a_folded_journal(rj, tmp_path):
    """The holder's `running` row was folded into the store before a cleaner removed its lock
    file: the next run still finds it (in the journal) and stands back instead of overlapping."""
    started, release = tmp_path / "started", tmp_path / "release"
    rj.write(f'[jobs.slow]\ncommand = ["{PY}", "-c", {json.dumps(HOLD)}, "{started}", "{release}"]\n')
    holder = rj.popen("slow")
    assert wait_for(started.exists)
    assert rj.run("history", "--json").code == 0  # the fold
    lock_file = rj.state / "locks" / "slow.lock"
    lock_file.unlink()
    second = rj.run("slow")
    release.write_text("go")
    assert finish(holder).code == 0
    busy = second.one("lock.busy")
    assert second.code == 0 and not second.events("run.start") and started.read_text() == "x"  # one child
    assert busy["holder_pid"] == holder.pid


def test_a_killed_run_is_folded_as_crashed_and_leaves_the_journal(rj, tmp_path):
    pid_file, release = tmp_path / "pid", tmp_path / "release"
    rj.write(f'[jobs.doomed]\ncommand = ["{PY}", "-c", {json.dumps(HOLD_PID)}, "{pid_file}", "{release}"]\n')
    proc = rj.popen("doomed")
    assert wait_for(pid_file.exists)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    child = int(pid_file.read_text())
    os.kill(child, signal.SIGKILL)  # the child outlives its runjob; only the lock cares (another test)
    assert wait_for(lambda: not alive(child))
    shown = json.loads(rj.run("history", "--json").out)
    assert [r["status"] for r in shown] == ["crashed"]
    assert (rj.state / JOURNAL).read_bytes() == b""  # its runjob is gone: the line is not kept


def test_a_journal_past_its_limit_is_folded_by_a_run(rj):
    """Nobody reads the history: the runs fold it themselves once it passes 256 KiB."""
    rj.write('[jobs.t]\ncommand = ["true"]\n')
    assert rj.run("t").code == 0
    end = journal_rows(rj)[-1]
    lines = []
    for _ in range(700):
        row = end | {"run_id": str(uuid.uuid4())}
        lines.append(json.dumps(row))
    with open(rj.state / JOURNAL, "a") as f:
        f.write("\n".join(lines) + "\n")
    assert (rj.state / JOURNAL).stat().st_size > 256 << 10
    assert rj.run("t").code == 0
    assert (rj.state / JOURNAL).read_bytes() == b""
    assert len(store_rows(rj, "job = 't' AND status = 'success'")) == 702


def test_a_torn_or_foreign_line_is_skipped_and_the_rest_is_folded(rj, tmp_path):
    started, release = tmp_path / "started", tmp_path / "release"
    rj.write(f'[jobs.t]\ncommand = ["true"]\n[jobs.slow]\ncommand = {py(HOLD, str(started), str(release))}\n')
    assert rj.run("t").code == 0
    with open(rj.state / JOURNAL, "ab") as f:
        f.write(b'{"run_id": "x", "job": ["not", "a", "row"]}\n\x00\xff garbage\n')
    assert rj.run("t").code == 0
    with open(rj.state / JOURNAL, "ab") as f:
        f.write(b'{"run_id": "torn-by-a-cra')  # a crash mid-write: no newline
    proc = rj.popen("slow")  # its `running` line starts a line of its own, never glued to the torn one
    assert wait_for(started.exists)
    shown = json.loads(rj.run("history", "--json").out)
    release.write_text("go")
    assert finish(proc).code == 0
    assert [(r["job"], r["status"]) for r in shown] == [("slow", "running"), ("t", "success"), ("t", "success")]


def test_a_symlink_planted_as_the_journal_stops_the_run(rj, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    rj.write('[jobs.t]\ncommand = ["true"]\n')
    rj.state.mkdir(mode=0o700)
    (rj.state / JOURNAL).symlink_to(victim)
    r = rj.run("t")
    assert r.code == 125 and f"{JOURNAL} is a symlink" in r.err and "Traceback" not in r.err
    assert victim.read_text() == "keep me\n"
    assert not r.events("run.output")  # nothing ran


def test_runs_and_readers_at_once_lose_no_row(rj):
    """Twenty runs end while readers fold again and again: every run is in the store once."""
    jobs = "".join(f'[jobs.j{i}]\ncommand = ["true"]\n' for i in range(20))
    rj.write(jobs)
    runs = [rj.popen(f"j{i}") for i in range(20)]
    readers = [rj.popen("history", "--json", "--limit", "100") for _ in range(6)]
    assert all(finish(p).code == 0 for p in runs + readers)
    shown = json.loads(rj.run("history", "--json", "--limit", "100").out)
    assert sorted(r["job"] for r in shown) == sorted(f"j{i}" for i in range(20))
    assert {r["status"] for r in shown} == {"success"}


def test_an_older_runjob_s_pending_file_is_folded_and_removed(rj):
    """history.pending (the file earlier versions kept refused run ends in) has the same lines."""
    rj.write('[jobs.t]\ncommand = ["true"]\n')
    assert rj.run("t").code == 0
    row = journal_rows(rj)[-1] | {"run_id": str(uuid.uuid4()), "status": "failed", "exit_code": 3}
    (rj.state / "history.pending").write_text(json.dumps(row) + "\n")
    shown = json.loads(rj.run("history", "--json").out)
    assert sorted(r["status"] for r in shown) == ["failed", "success"]
    assert not (rj.state / "history.pending").exists()


def test_the_journal_keeps_secrets_masked(rj):
    rj.write('[jobs.t]\ncommand = ["sh", "-c", "echo $TOKEN >&2; exit 1"]\nsecrets = ["TOKEN"]\nlock_key = "t"\n')
    r = rj.run("t", env={"TOKEN": "hunter2-secret"})
    assert r.code == 1
    assert b"hunter2-secret" not in (rj.state / JOURNAL).read_bytes()
    assert journal_rows(rj)[-1]["stderr_tail"].strip() == "***"


def test_a_child_that_reads_the_history_while_its_run_is_live(rj):
    """A job that runs `runjob history` (a report job) folds its own run's `running` line."""
    code = py(
        "import json, subprocess, sys; rows = json.loads(subprocess.run([sys.argv[1], 'history', '--json'], "
        "capture_output=True, check=True).stdout); print(rows[0]['status'])",
        RUNJOB,
    )
    rj.write(f"[jobs.digest]\ncommand = {code}\n")
    r = rj.run("digest")
    assert r.code == 0 and [o["line"] for o in r.events("run.output")] == ["running"]
    assert [x["status"] for x in json.loads(rj.run("history", "--json").out)] == ["success"]
