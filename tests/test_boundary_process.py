"""The process boundary as hosts hand it over: closed standard streams, PID 1, the bare
environment of cron, signals while waiting, scripts that cannot be executed, a stalled
reader of runjob's own stdout, bytes that are not UTF-8."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import HOLD, PY, RUNJOB, Result, finish, py, q, wait_for

ECHO_DONE = py("print('work done')")


def closed(rj, redirect: str, *args: str, **kw) -> subprocess.Popen[bytes]:
    """`runjob ARGS` started with the standard streams that `redirect` closes (e.g. '>&-')."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    script = f'exec "$@" {redirect}'
    return subprocess.Popen(["sh", "-c", script, "sh", RUNJOB, *args], env=rj.env(), cwd=rj.dir,
                            stdin=subprocess.DEVNULL, **kw)  # fmt: skip


@pytest.mark.parametrize("redirect", [">&-", "2>&-", "<&-", "<&- >&- 2>&-"])
def test_closed_standard_streams_still_run_the_job_into_its_log_file(rj, redirect):
    rj.write(f'[jobs.nightly]\ncommand = {ECHO_DONE}\nlog_file = "logs/nightly.log"\n')
    r = finish(closed(rj, redirect, "nightly"))
    assert r.code == 0, r.err
    assert "Traceback" not in r.err and r.err == ""
    records = [json.loads(line) for line in (rj.dir / "logs/nightly.log").read_text().splitlines()]
    assert [x["event"] for x in records] == ["run.start", "run.output", "run.attempt", "run.end"]
    assert records[1]["line"] == "work done" and records[-1]["status"] == "success"


@pytest.mark.parametrize("form", [["report"], ["run", "report", "--format", "json"]])
def test_closed_stdout_never_turns_the_lock_file_into_the_record_stream(rj, form):
    started, release = rj.dir / "started", rj.dir / "release"
    rj.write(f"[jobs.report]\ncommand = {py(HOLD, str(started), str(release))}\n")
    first = closed(rj, ">&-", *form)
    assert wait_for(started.exists, timeout=30)
    second = rj.run("report")
    busy = second.one("lock.busy")
    holder = json.loads((rj.state / "locks/report.lock").read_text())  # only the holder text
    assert busy["holder_pid"] == first.pid and busy["holder_run_id"] == holder["run_id"]
    release.write_text("go")
    r = finish(first)
    assert r.code == 0 and "Traceback" not in r.err
    assert json.loads((rj.state / "locks/report.lock").read_text())["run_id"] == holder["run_id"]
    rows = json.loads(rj.run("history", "--json").out)
    assert sorted(row["status"] for row in rows) == ["skipped", "success"]
