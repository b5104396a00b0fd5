"""Looking at the runs (SPEC section 11): kept runs, `runjob logs`, quiet on success, the
HTML report and `runjob serve` (their browser side is in test_browser.py)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from conftest import HOLD, PY, Env, finish, py, q, wait_for


def kept_files(rj: Env, job: str) -> list[Path]:
    return sorted((rj.state / "runs" / job).glob("*.jsonl"))


def test_every_run_is_kept_private_and_logs_prints_it_as_written(rj: Env) -> None:
    hello = py("import sys; print('hi'); print('oops', file=sys.stderr)")
    rj.write(f"[jobs.hello]\ncommand = {hello}\n")
    res = rj.run("hello")
    assert res.code == 0
    run_id = res.one("run.end")["run_id"]
    [kept] = kept_files(rj, "hello")
    assert kept.name == f"{run_id}.jsonl"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert kept.read_text() == res.out  # the same bytes stdout got
    shown = rj.run("logs", run_id[:8])
    assert (shown.code, shown.out) == (0, res.out)
    assert rj.run("logs", run_id).out == res.out


def test_kept_runs_are_bounded_per_job_oldest_pruned(rj: Env) -> None:
    rj.write(f"[defaults]\nstate_dir = {q(str(rj.state))}\nkeep_runs = 3\n\n"
             f"[jobs.a]\ncommand = {py('pass')}\n[jobs.b]\ncommand = {py('pass')}\n")  # fmt: skip
    ids = [rj.run("a").one("run.end")["run_id"] for _ in range(5)]
    b_id = rj.run("b").one("run.end")["run_id"]
    assert [p.stem for p in kept_files(rj, "a")] == sorted(ids[2:])
    assert [p.stem for p in kept_files(rj, "b")] == [b_id]
    gone = rj.run("logs", ids[0])
    assert gone.code == 2 and "no kept run" in gone.err and gone.err.count("\n") == 1


def test_logs_unknown_short_and_ambiguous_ids_are_one_line_usage_errors(rj: Env) -> None:
    rj.write(f"[jobs.a]\ncommand = {py('pass')}\n")
    rj.run("a")
    (rj.state / "runs" / "a" / "abcdef01-1111-4111-8111-111111111111.jsonl").write_text("{}\n")
    (rj.state / "runs" / "a" / "abcdef01-2222-4222-8222-222222222222.jsonl").write_text("{}\n")
    for given, says in (("abcdef01", "ambiguous"), ("abc", "at least 8"), ("00000000", "no kept run")):
        res = rj.run("logs", given)
        assert res.code == 2, res.err
        assert says in res.err and res.err.count("\n") == 1 and "Traceback" not in res.err
    assert rj.run("logs", "abcdef01-1").out == "{}\n"


def test_logs_follow_prints_a_running_run_until_it_ends(rj: Env, tmp_path: Path) -> None:
    started, release = tmp_path / "started", tmp_path / "release"
    slow = py(HOLD + "print('done')", str(started), str(release))
    rj.write(f"[jobs.slow]\ncommand = {slow}\n")
    run = rj.popen("slow")
    assert wait_for(started.exists)
    [kept] = kept_files(rj, "slow")
    follow = rj.popen("logs", "--follow", kept.stem[:12])
    release.write_text("go")
    res, followed = finish(run), finish(follow)
    assert followed.code == 0
    assert followed.out == res.out
    assert followed.records[-1]["event"] == "run.end"


def test_a_symlink_where_the_kept_runs_go_is_refused(rj: Env, tmp_path: Path) -> None:
    rj.write(f"[jobs.a]\ncommand = {py('pass')}\n")
    rj.run("a")  # creates the state dir
    (rj.state / "runs" / "a").rename(tmp_path / "elsewhere")
    (rj.state / "runs" / "a").symlink_to(tmp_path / "elsewhere")
    res = rj.run("a")
    assert res.code == 125 and "symlink" in res.err and "Traceback" not in res.err


QUIET_JOB = 'import sys\nprint("working")\nsys.exit(int(sys.argv[1]))\n'


def test_quiet_on_success_prints_nothing_when_the_run_succeeds(rj: Env) -> None:
    rj.write(f'[jobs.q]\ncommand = {py(QUIET_JOB, "0")}\nquiet = "on-success"\n')
    res = rj.run("q")
    assert (res.code, res.out) == (0, "")
    [kept] = kept_files(rj, "q")
    events = [json.loads(line)["event"] for line in kept.read_text().splitlines()]
    assert events == ["run.start", "run.output", "run.attempt", "run.end"]
    [row] = json.loads(rj.run("history", "--json").out)
    assert row["status"] == "success"


def test_quiet_prints_every_record_of_a_failed_run_in_order(rj: Env) -> None:
    rj.write(f'[jobs.q]\ncommand = {py(QUIET_JOB, "3")}\n')
    res = rj.run("q", "--quiet")
    assert res.code == 3
    assert [r["event"] for r in res.records] == ["run.start", "run.output", "run.attempt", "run.end"]
    assert [r["seq"] for r in res.records] == [0, 1, 2, 3]
    [kept] = kept_files(rj, "q")
    assert kept.read_text() == res.out


def test_quiet_a_big_failed_run_comes_out_whole_from_the_kept_file(rj: Env) -> None:
    code = "import sys\nfor i in range(50000): print('line', i)\nsys.exit(1)\n"
    rj.write(f'[jobs.q]\ncommand = {py(code)}\nquiet = "on-success"\n')
    res = rj.run("q")
    assert res.code == 1
    lines = [r["line"] for r in res.events("run.output")]
    assert lines == [f"line {i}" for i in range(50000)]


def test_quiet_leaves_the_log_file_everything(rj: Env, tmp_path: Path) -> None:
    log = tmp_path / "q.log"
    rj.write(f'[jobs.q]\ncommand = {py(QUIET_JOB, "0")}\nquiet = "on-success"\nlog_file = {q(str(log))}\n')
    res = rj.run("q")
    assert (res.code, res.out) == (0, "")
    assert [json.loads(x)["event"] for x in log.read_text().splitlines()][-1] == "run.end"


def test_quiet_and_keep_runs_are_checked_by_validate(rj: Env) -> None:
    rj.write(f'[jobs.q]\ncommand = {py("pass")}\nquiet = "sometimes"\nkeep_runs = 0\n')
    res = rj.run("validate")
    assert res.code == 78
    assert "jobs.q.quiet" in res.err and "jobs.q.keep_runs" in res.err


def test_the_crontab_export_says_how_to_mail_only_failures(rj: Env) -> None:
    rj.write(f'[jobs.q]\ncommand = {py("pass")}\nschedule = "*/5 * * * *"\n')
    res = rj.run("export", "crontab")
    assert res.code == 0, res.err
    header = [line for line in res.out.splitlines() if line.startswith("#")]
    assert any("MAILTO" in line and 'quiet = "on-success"' in line for line in header)

