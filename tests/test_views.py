"""Looking at the runs (SPEC section 11): kept runs, `runjob logs`, quiet on success, the
HTML report and `runjob serve` (their browser side is in test_browser.py)."""

from __future__ import annotations

import json
import stat
from html.parser import HTMLParser
from pathlib import Path

from conftest import HOLD, Env, finish, py, q, wait_for
from hypothesis import given, settings
from hypothesis import strategies as st


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
    shown = rj.run("logs", run_id[:8])  # the same bytes stdout got
    assert (shown.code, shown.out) == (0, res.out)
    assert rj.run("logs", run_id).out == res.out


def test_kept_runs_are_bounded_per_job_oldest_pruned(rj: Env) -> None:
    rj.write(
        f"[defaults]\nstate_dir = {q(str(rj.state))}\nkeep_runs = 3\n\n"
        f"[jobs.a]\ncommand = {py('pass')}\n[jobs.b]\ncommand = {py('pass')}\n"
    )
    ids = [rj.run("a").one("run.end")["run_id"] for _ in range(4)]
    assert [p.stem for p in kept_files(rj, "a")] == sorted(ids)  # 3 and the slack of one: no prune yet
    ids.append(rj.run("a").one("run.end")["run_id"])  # one over the slack: pruned back to 3
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
    for run_id, says in (("abcdef01", "ambiguous"), ("abc", "at least 8"), ("00000000", "no kept run")):
        res = rj.run("logs", run_id)
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
    events = [r["event"] for r in rj.run("logs", kept.stem).records]
    assert events == ["run.start", "run.output", "run.attempt", "run.end"]
    [row] = json.loads(rj.run("history", "--json").out)
    assert row["status"] == "success"


def test_quiet_prints_every_record_of_a_failed_run_in_order(rj: Env) -> None:
    rj.write(f"[jobs.q]\ncommand = {py(QUIET_JOB, '3')}\n")
    res = rj.run("q", "--quiet")
    assert res.code == 3
    assert [r["event"] for r in res.records] == ["run.start", "run.output", "run.attempt", "run.end"]
    assert [r["seq"] for r in res.records] == [0, 1, 2, 3]
    [kept] = kept_files(rj, "q")
    assert rj.run("logs", kept.stem).out == res.out


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


# --- the report -------------------------------------------------------------------------

FAIL_JOB = 'import sys\nprint("bad <input> & worse", file=sys.stderr)\nsys.exit(4)\n'


class Page(HTMLParser):
    """Every element's attributes, the text of the page, and any reference to elsewhere."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def bars(self) -> dict[str, str]:
        found = [a for _, a in self.elements if "data-run-id" in a and "data-status" in a]
        ids = [a["data-run-id"] for a in found]
        assert len(ids) == len(set(ids)), "a run has more than one element with both attributes"
        return {a["data-run-id"]: a["data-status"] for a in found}  # type: ignore[misc]

    def references(self) -> list[str]:
        return [v for _, a in self.elements for k, v in a.items() if k in ("src", "href", "action") and v]


def make_runs(rj: Env) -> dict[str, str]:
    """A few real runs of three jobs: run id -> status."""
    rj.write(
        f"[jobs.ok]\ncommand = {py('print(1)')}\n[jobs.bad]\ncommand = {py(FAIL_JOB)}\n"
        f"[jobs.mixed]\ncommand = {py('import sys; sys.exit(int(sys.argv[1]))', '{code}')}\n"
        '[jobs.mixed.params.code]\npattern = "[0-9]"\n'
    )
    runs = [rj.run("ok"), rj.run("ok"), rj.run("bad"), rj.run("mixed", "code=0"), rj.run("mixed", "code=3")]
    return {r.one("run.end")["run_id"]: r.one("run.end")["status"] for r in runs}


def test_report_has_one_bar_per_run_with_its_status_and_the_stats(rj: Env) -> None:
    runs = make_runs(rj)
    out = rj.dir / "report.html"
    res = rj.run("report", "--html", str(out))
    assert res.code == 0, res.err
    assert stat.S_IMODE(out.stat().st_mode) & 0o137 == 0
    html = out.read_text()
    page = Page(html)
    assert page.bars() == runs
    assert page.references() == []  # self-contained: nothing fetched from anywhere
    assert "default-src 'none'" in html
    text = " ".join(" ".join(page.text).split())
    assert "bad <input> & worse" in text  # the last failure's stderr tail, escaped
    assert "bad <input>" not in html
    for job, runs_n, rate in (("ok", 2, "100.0%"), ("bad", 1, "0.0%"), ("mixed", 2, "50.0%")):
        row = [t for t in html.split('<tr class="job">')[1:] if t.startswith(f"<td>{job}</td>")]
        assert len(row) == 1 and f'<td class="n">{runs_n}</td>' in row[0] and rate in row[0]
    tips = {t.split(" · ")[0]: t for t in page.text if t.startswith(tuple(runs)) and " · exit " in t}
    assert {i: t.split(" · ")[1] for i, t in tips.items()} == runs


def test_report_job_and_since_select_runs_and_bad_values_are_usage_errors(rj: Env) -> None:
    runs = make_runs(rj)
    out = rj.dir / "r.html"
    assert rj.run("report", "--html", str(out), "--job", "ok").code == 0
    assert set(Page(out.read_text()).bars().values()) == {"success"} and len(Page(out.read_text()).bars()) == 2
    assert rj.run("report", "--html", str(out), "--since", "all").code == 0
    assert len(Page(out.read_text()).bars()) == len(runs)
    for args, says in ((["--job", "nope"], "unknown job"), (["--since", "soon"], "--since")):
        res = rj.run("report", "--html", str(out), *args)
        assert res.code == 2 and says in res.err and res.err.count("\n") == 1


def test_report_refuses_to_write_through_a_symlink(rj: Env, tmp_path: Path) -> None:
    make_runs(rj)
    target = tmp_path / "target"
    target.write_text("keep")
    (rj.dir / "link.html").symlink_to(target)
    res = rj.run("report", "--html", str(rj.dir / "link.html"))
    assert res.code == 125 and "symlink" in res.err
    assert target.read_text() == "keep"


def add_history_rows(rj: Env, n: int) -> list[str]:
    """`n` more runs in the history store a real run created: a day of a busy host."""
    import sqlite3
    import time

    now = time.time()
    assert rj.run("history").code == 0  # the real run's rows, folded in from the journal
    db = sqlite3.connect(rj.state / "history.sqlite3")
    statuses = ["success"] * 17 + ["failure", "timeout", "transient"]
    rows = []
    for i in range(n):
        start = now - 86000 + i * 86000 / n
        status = statuses[i % len(statuses)]
        rows.append(
            (
                f"{i:08x}-0000-4000-8000-{i:012x}",
                f"job-{i % 12}",
                start,
                start + 3 + i % 40,
                status,
                0 if status == "success" else 1,
                1,
                3 + i % 40,
                "Traceback ...\nValueError: x" if status != "success" else "",
            )
        )
    with db:
        db.executemany(
            "INSERT INTO runs (run_id, job, started, ended, status, exit_code, attempts, duration_s,"
            " stderr_tail, params) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '{}')",
            rows,
        )
    db.close()
    return [r[0] for r in rows]


def test_report_of_ten_thousand_runs_has_every_bar_and_stays_small(rj: Env) -> None:
    rj.write(f"[jobs.seed]\ncommand = {py('pass')}\n")
    first = rj.run("seed").one("run.end")["run_id"]
    ids = add_history_rows(rj, 10000)
    out = rj.dir / "big.html"
    res = rj.run("report", "--html", str(out))
    assert res.code == 0, res.err
    assert out.stat().st_size < 4 * 1024 * 1024
    assert set(Page(out.read_text()).bars()) == set(ids) | {first}


@settings(max_examples=60, deadline=None)
@given(
    job=st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True),
    tail=st.text(max_size=200),
    status=st.sampled_from(["success", "failure", "timeout", "killed", "running", "crashed"]),
)
def test_report_template_escapes_whatever_the_history_holds(job: str, tail: str, status: str) -> None:
    from runjob.views import model, report

    run = {
        "run_id": "0123abcd-0000-4000-8000-000000000000",
        "job": job,
        "started": 1.7e9,
        "ended": 1.7e9 + 5,
        "status": status,
        "exit_code": 1,
        "duration_s": 5.0,
        "stderr_tail": tail,
    }
    data = model.build([run], 1.7e9 + 10)
    data["job"] = None
    page = Page(report.render(data))
    assert page.bars() == {run["run_id"]: status}
    assert page.references() == []
    if status in model.FAILED and tail.strip():
        shown = "".join(page.text)
        for line in tail.splitlines()[-model.TAIL_LINES :]:
            assert line.replace("\r", "\n").strip("\n") in shown.replace("\r\n", "\n").replace("\r", "\n")


# --- runjob serve -----------------------------------------------------------------------


def start_server(rj: Env, *args: str) -> tuple[object, str]:
    """`runjob serve` on a free port; (its process, its base URL) once it listens."""
    import re
    import subprocess

    proc = rj.popen("serve", "--bind", "127.0.0.1:0", *args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    assert proc.stderr is not None
    line = proc.stderr.readline().decode()
    found = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    assert found, line
    return proc, f"http://127.0.0.1:{found.group(1)}"


def get(url: str, method: str = "GET", host: str | None = None) -> tuple[int, str, str]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, method=method, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


def test_serve_gives_the_live_view_and_the_runs_as_json_read_only(rj: Env) -> None:
    runs = make_runs(rj)
    proc, base = start_server(rj)
    try:
        code, kind, html = get(base + "/")
        assert (code, kind.split(";")[0]) == (200, "text/html")
        assert Page(html).bars() == runs
        code, kind, body = get(base + "/api/runs")
        assert (code, kind) == (200, "application/json")
        assert {r["run_id"]: r["status"] for r in json.loads(body)["runs"]} == runs
        code, _, body = get(base + "/api/runs?job=bad")
        assert [r["status"] for r in json.loads(body)["runs"]] == ["failure"]
        assert get(base + "/api/runs?job=nope")[0] == 400
        assert get(base + "/nothing")[0] == 404
        assert get(base + "/", method="POST")[0] == 501  # read-only: only GET and HEAD
        assert get(base + "/", host="evil.example:80")[0] == 421  # DNS rebinding gets nothing
    finally:
        proc.terminate()  # type: ignore[attr-defined]
        proc.wait(timeout=30)  # type: ignore[attr-defined]


def test_serve_bad_bind_is_a_usage_error(rj: Env) -> None:
    rj.write(f"[jobs.a]\ncommand = {py('pass')}\n")
    res = rj.run("serve", "--bind", "localhost")
    assert res.code == 2 and "--bind" in res.err and res.err.count("\n") == 1


def test_quiet_judges_by_the_outcome_a_busy_skip_is_quiet_a_busy_fail_is_not(rj: Env, tmp_path: Path) -> None:
    started, release = tmp_path / "started", tmp_path / "release"
    warn = 'import json; print(json.dumps({"level": "warning", "message": "slow disk"}))'
    rj.write(
        f'[defaults]\nstate_dir = {q(str(rj.state))}\nquiet = "on-success"\n\n'
        f"[jobs.hold]\ncommand = {py(HOLD, str(started), str(release))}\n"
        f'[jobs.skip]\ncommand = {py("pass")}\nlock_key = "hold"\n'
        f'[jobs.fail]\ncommand = {py("pass")}\nlock_key = "hold"\non_busy = "fail"\n'
        f"[jobs.warn]\ncommand = {py(warn)}\n"
    )
    assert rj.run("warn").out == ""  # a warning in a run that succeeded: still quiet
    holder = rj.popen("hold")
    assert wait_for(started.exists)
    skipped, failed = rj.run("skip"), rj.run("fail")
    release.write_text("go")
    assert finish(holder).code == 0
    assert (skipped.code, skipped.out) == (0, "")
    assert failed.code == 75 and [r["event"] for r in failed.records] == ["lock.busy"]
