"""Owner notifications, pings, duration bounds, metrics and the live terminal view."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from conftest import HOLD, PY, RUNJOB, finish, py, q, wait_for

CAPTURE = "import sys; open(sys.argv[1], 'ab').write(sys.stdin.buffer.read() + b'\\n')"


def owners(rj, http) -> str:
    pages = rj.dir / "pages.jsonl"
    return f"[owners.ops]\ncommand = {py(CAPTURE, str(pages))}\n[owners.dom]\nwebhook = {q(http.url + '/hook/dom')}\n"


def job(rj, http, code: str, extra: str = "") -> None:
    rj.write(
        owners(rj, http) + f'[jobs.j]\ncommand = {py(code)}\nowners = {{ responsible = "ops", accountable = "dom" }}\n'
        f'description = "the job"\nidempotency = "safe"\n{extra}\n'
    )


def pages(rj) -> list[dict]:
    path = rj.dir / "pages.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# Held until a release file that never comes: only the timeout ends it.
NEVER_RELEASED = HOLD.replace("sys.argv[1]", "'/dev/null'").replace("sys.argv[2]", "'/nonexistent/release'")


@pytest.mark.parametrize(
    "code, extra, status",
    [
        ("import sys; print('bad', file=sys.stderr); sys.exit(3)", "", "failure"),
        (NEVER_RELEASED, 'timeout = "300ms"', "timeout"),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "", "killed"),
    ],
)
def test_failures_notify_both_owners(rj, http, code, extra, status):
    job(rj, http, code, extra)
    r = rj.run("j")
    assert r.one("run.end")["status"] == status
    (page,) = pages(rj)
    assert page["role"] == "responsible" and page["notice"] == "page" and page["owner"] == "ops"
    assert page["kind"] == status and page["description"] == "the job" and page["idempotency"] == "safe"
    assert page["record"] == r.one("run.end")
    ((method, path, body),) = http.requests
    notice = json.loads(body)
    assert method == "POST" and path == "/hook/dom"
    assert (
        notice["role"] == "accountable" and notice["notice"] == "domain notice" and notice["record"]["status"] == status
    )
    sent = {(s["owner"], s["role"], s["channel"]) for s in r.events("notify.sent")}
    assert sent == {("ops", "responsible", "command"), ("dom", "accountable", "webhook")}


@pytest.mark.parametrize(
    "code, extra",
    [
        ("pass", ""),
        ("import sys; sys.exit(75)", "transient = { exit_codes = [75] }"),
    ],
)
def test_success_and_transient_notify_nobody(rj, http, code, extra):
    job(rj, http, code, extra)
    r = rj.run("j")
    assert not r.events("notify.sent") and not pages(rj) and not http.requests


def test_skipped_run_notifies_nobody(rj, http):
    flag, release = rj.dir / "started", rj.dir / "release"
    job(rj, http, HOLD.replace("sys.argv[1]", repr(str(flag))).replace("sys.argv[2]", repr(str(release))))
    first = rj.popen("j")
    assert wait_for(flag.exists)
    assert rj.run("j").events("lock.busy")
    release.write_text("go")
    finish(first)
    assert not pages(rj) and not http.requests


def test_failing_notifiers_never_change_the_exit_code(rj, http):
    http.status = 500
    rj.write(
        '[owners.ops]\ncommand = ["false"]\n[owners.dom]\nwebhook = ' + q(http.url) + "\n"
        '[owners.gone]\ncommand = ["/no/such/pager"]\n'
        f'[jobs.j]\ncommand = {py("import sys; sys.exit(6)")}\nowners = {{ responsible = "ops", accountable = "dom" }}\n'
        f'[jobs.k]\ncommand = {py("import sys; sys.exit(7)")}\nowners = {{ responsible = "gone" }}\n'
    )
    r = rj.run("j")
    assert r.code == 6
    errors = {e["channel"]: e for e in r.events("notify.error")}
    assert "exited with 1" in errors["command"]["error"] and "HTTP 500" in errors["webhook"]["error"]
    assert all(e["level"] == "error" for e in errors.values())
    r = rj.run("k")
    assert r.code == 7 and "cannot start /no/such/pager" in r.one("notify.error")["error"]


def test_hanging_notifiers_are_cut_at_the_notify_timeout(rj, http):
    http.delay = 60
    rj.write(
        f'[defaults]\nstate_dir = {q(str(rj.state))}\nnotify_timeout = "500ms"\n'
        f"[owners.ops]\ncommand = {py(NEVER_RELEASED)}\n[owners.dom]\nwebhook = {q(http.url)}\n"
        f'[jobs.j]\ncommand = {py("import sys; sys.exit(5)")}\nowners = {{ responsible = "ops", accountable = "dom" }}\n'
    )
    r = rj.run("j", timeout=40)  # a hang guard only
    assert r.code == 5
    errors = {e["channel"]: e["error"] for e in r.events("notify.error")}
    assert "did not finish within 0.5s" in errors["command"] and "no complete answer within 0.5s" in errors["webhook"]


def test_ping_protocol(rj, http):
    rj.write(
        f'[jobs.ok]\ncommand = ["true"]\nping_url = {q(http.url + "/ping/abc")}\n'
        f"[jobs.bad]\ncommand = {py('import sys; print(chr(100) + chr(101) + chr(97) + chr(100), file=sys.stderr); sys.exit(1)')}\n"
        f"ping_url = {q(http.url + '/ping/def/')}\n"
    )
    ok = rj.run("ok").one("run.end")["run_id"]
    bad = rj.run("bad").one("run.end")["run_id"]
    assert [(m, p) for m, p, _ in http.requests] == [
        ("GET", f"/ping/abc/start?rid={ok}"),
        ("POST", f"/ping/abc?rid={ok}"),
        ("GET", f"/ping/def/start?rid={bad}"),
        ("POST", f"/ping/def/fail?rid={bad}"),
    ]
    assert http.requests[3][2] == b"dead\n"


def test_ping_failure_is_logged_not_fatal(rj):
    rj.write('[jobs.ok]\ncommand = ["true"]\nping_url = "http://127.0.0.1:9/nothing-listens"\n')
    r = rj.run("ok")
    assert r.code == 0 and len(r.events("ping.error")) == 2
    assert all(e["level"] == "warning" for e in r.events("ping.error"))


def test_too_fast_success_warns_and_tells_owners(rj, http):
    job(rj, http, "pass", 'expected_duration = { min = "30m" }')  # far beyond `pass`, however loaded the host
    r = rj.run("j")
    assert r.code == 0
    warning = r.one("run.duration")
    assert warning["level"] == "warning" and warning["expected_min_s"] == 1800.0 and warning["duration_s"] < 1800
    (page,) = pages(rj)
    assert page["kind"] == "duration" and page["record"]["event"] == "run.duration"


def test_overrun_is_reported_while_running(rj, http):
    release = rj.dir / "release"
    job(
        rj,
        http,
        HOLD.replace("sys.argv[1]", "'/dev/null'").replace("sys.argv[2]", repr(str(release))),
        'expected_duration = { max = "500ms" }',
    )
    proc = rj.popen("j")
    seen = []
    for line in proc.stdout:  # the child holds until runjob has reported the overrun
        seen.append(line.decode())
        if json.loads(line)["event"] == "run.duration":
            release.write_text("go")
            break
    r = finish(proc)
    r.out = "".join(seen) + r.out
    assert r.code == 0
    warning = r.one("run.duration")
    events = [rec["event"] for rec in r.records]
    assert events.index("run.duration") < events.index("run.attempt")  # while the child still ran
    assert warning["expected_max_s"] == 0.5 and warning["duration_s"] == 0.5
    assert pages(rj)[0]["kind"] == "duration"


def test_metrics_file(rj):
    metrics = rj.dir / "metrics" / "runjob.prom"
    rj.write(
        f'[defaults]\nstate_dir = "state"\nmetrics_file = {q(str(metrics))}\n'
        '[jobs.ok]\ncommand = ["true"]\nlock_key = "ok.{n}"\n[jobs.ok.params.n]\npattern = "[0-9]+"\n'
        f"[jobs.bad]\ncommand = {py('import sys; sys.exit(3)')}\n"
    )
    procs = [rj.popen("ok", f"n={i}") for i in range(6)]
    assert [finish(p).code for p in procs] == [0] * 6
    before = time.time()
    rj.run("bad")
    after = time.time()
    text = metrics.read_text()
    samples = {}
    for line in text.splitlines():
        if not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    # one series per instance (param set): n=0 ... n=5
    assert [samples[f'runjob_runs_total{{job="ok",n="{i}",status="success"}}'] for i in range(6)] == [1] * 6
    assert samples['runjob_runs_total{job="bad",status="failure"}'] == 1
    assert samples['runjob_last_exit_code{job="bad"}'] == 3
    # started within the run, however long the run took (the file keeps milliseconds)
    assert before - 0.001 <= samples['runjob_last_start_timestamp_seconds{job="bad"}'] <= after
    assert 'runjob_last_success_timestamp_seconds{job="bad"}' not in samples
    assert samples['runjob_last_duration_seconds{job="ok",n="0"}'] >= 0
    assert "# TYPE runjob_runs_total counter" in text and "# TYPE runjob_last_exit_code gauge" in text
    assert not list(metrics.parent.glob("*.tmp"))


def test_live_view_on_a_terminal_only(rj):
    rj.write(f"[jobs.v]\ncommand = {py('import sys; print(1); sys.stdout.flush(); print(2)')}\n")
    out = subprocess.run(
        ["script", "-qec", f"{RUNJOB} run v", "/dev/null"],
        capture_output=True,
        text=True,
        env=rj.env({"COLUMNS": "120"}),
        cwd=rj.dir,
        timeout=60,
    ).stdout
    assert "attempt 1" in out and "run.end" in out and "v succeeded" in out and "\x1b[" in out
    plain = rj.run("v")
    assert "attempt 1  " not in plain.out and "\x1b[" not in plain.out and plain.records
    assert PY
