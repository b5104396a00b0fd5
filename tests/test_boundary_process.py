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
from conftest import HOLD, RUNJOB, Result, finish, py, q, wait_for

ECHO_DONE = py("print('work done')")


def closed(rj, redirect: str, *args: str, **kw) -> subprocess.Popen[bytes]:
    """`runjob ARGS` started with the standard streams that `redirect` closes (e.g. '>&-')."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    script = f'exec "$@" {redirect}'
    return subprocess.Popen(
        ["sh", "-c", script, "sh", RUNJOB, *args], env=rj.env(), cwd=rj.dir, stdin=subprocess.DEVNULL, **kw
    )


@pytest.mark.parametrize("redirect", [">&-", "2>&-", "<&-", "<&- >&- 2>&-"])
def test_closed_standard_streams_still_run_the_job_into_its_log_file(rj, redirect):
    rj.write(f'[jobs.nightly]\ncommand = {ECHO_DONE}\nlog_file = "logs/nightly.log"\n')
    r = finish(closed(rj, redirect, "nightly"))
    assert r.code == 0, r.err
    assert "Traceback" not in r.err and r.err == ""
    records = [json.loads(line) for line in (rj.dir / "logs/nightly.log").read_text().splitlines()]
    assert [x["event"] for x in records] == ["run.start", "run.output", "run.attempt", "run.end"]
    assert records[1]["line"] == "work done" and records[-1]["status"] == "success"


@pytest.mark.parametrize("form", [["nightly"], ["run", "nightly", "--format", "json"]])
def test_closed_stdout_never_turns_the_lock_file_into_the_record_stream(rj, form):
    started, release = rj.dir / "started", rj.dir / "release"
    rj.write(f"[jobs.nightly]\ncommand = {py(HOLD, str(started), str(release))}\n")
    first = closed(rj, ">&-", *form)
    assert wait_for(started.exists, timeout=30)
    second = rj.run("nightly")
    busy = second.one("lock.busy")
    holder = json.loads((rj.state / "locks/nightly.lock").read_text())  # only the holder text
    assert busy["holder_pid"] == first.pid and busy["holder_run_id"] == holder["run_id"]
    release.write_text("go")
    r = finish(first)
    assert r.code == 0 and "Traceback" not in r.err
    assert json.loads((rj.state / "locks/nightly.lock").read_text())["run_id"] == holder["run_id"]
    rows = json.loads(rj.run("history", "--json").out)
    assert sorted(row["status"] for row in rows) == ["skipped", "success"]


def test_started_with_sigchld_ignored_the_exit_code_is_still_the_childs(rj):
    rj.write(f"[jobs.three]\ncommand = {py('raise SystemExit(3)')}\n")
    proc = subprocess.run(
        [RUNJOB, "three"],
        check=False,
        capture_output=True,
        env=rj.env(),
        cwd=rj.dir,
        stdin=subprocess.DEVNULL,
        preexec_fn=lambda: signal.signal(signal.SIGCHLD, signal.SIG_IGN),
        timeout=60,
    )
    r = Result(proc)
    assert r.code == 3, r.err
    end = r.one("run.end")
    assert end["status"] == "failure" and end["exit_code"] == 3


# Helpers that double-fork (`( cmd & )`): each is re-parented to PID 1 when its parent exits.
SPAWNER = """
for i in $(seq 20); do ( sleep 0.1 & ); done
# wait (bounded only as a safety net) until no sleep is left, alive or zombie
i=0
while [ "$(ps -eo comm= | grep -c '^sleep$')" -ne 0 ] && [ "$i" -lt 600 ]; do sleep 0.05; i=$((i + 1)); done
echo "zombies now: $(ps -eo stat=,comm= | grep -c '^Z.* sleep$')"
exit 7
"""


def test_as_pid_1_runjob_reaps_orphans_and_keeps_the_childs_status(rj):
    if subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "true"], check=False, capture_output=True
    ).returncode:
        pytest.skip("unshare --pid --fork --mount-proc is not permitted here")
    rj.write(f'[jobs.spawner]\ncommand = ["sh", "-c", {q(SPAWNER)}]\ntimeout = "2m"\n')
    proc = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", RUNJOB, "spawner"],
        check=False,
        capture_output=True,
        env=rj.env(),
        cwd=rj.dir,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    r = Result(proc)
    assert [o["line"] for o in r.events("run.output")] == ["zombies now: 0"], r.out + r.err
    end = r.one("run.end")
    assert (r.code, end["status"], end["exit_code"]) == (7, "failure", 7)


def test_sigterm_while_waiting_for_the_lock_ends_the_run_with_run_end_and_a_history_row(rj):
    started, release = rj.dir / "started", rj.dir / "release"
    rj.write(f'[jobs.settle]\ncommand = {py(HOLD, str(started), str(release))}\non_busy = "wait"\nwait = "5m"\n')
    first = rj.popen("settle")
    assert wait_for(started.exists, timeout=30)
    second = rj.popen("settle")
    # Signal it once it catches SIGTERM (its handler is in place): it is then waiting or about to.
    # Before the fix it never catches SIGTERM while waiting, and this wait fails.
    assert wait_for(lambda: _catches(second.pid, signal.SIGTERM), timeout=30)
    second.send_signal(signal.SIGTERM)
    r = finish(second)
    assert r.code == 143 and "Traceback" not in r.err
    end = r.one("run.end")
    assert end["status"] == "killed" and end["exit_code"] == 143 and end["level"] == "error"
    assert "signal 15" in end["message"] and "waiting for lock settle" in end["message"]
    assert first.poll() is None  # the first run's child is not affected
    release.write_text("go")
    assert finish(first).code == 0
    rows = {row["run_id"]: row["status"] for row in json.loads(rj.run("history", "--json").out)}
    assert rows[end["run_id"]] == "killed" and sorted(rows.values()) == ["killed", "success"]


def _catches(pid: int, sig: int) -> bool:
    """Has process `pid` a handler for `sig` (SigCgt in /proc/PID/status)?"""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught, 16) >> (sig - 1) & 1)


# An LD_PRELOAD shim: CLOCK_REALTIME steps back one hour once the file $STEP_BACK_AFTER exists.
CLOCK_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
int clock_gettime(clockid_t id, struct timespec *ts) {
    static int (*real)(clockid_t, struct timespec *);
    if (!real) real = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    int rc = real(id, ts);
    const char *flag = getenv("STEP_BACK_AFTER");
    if (rc == 0 && id == CLOCK_REALTIME && flag && access(flag, F_OK) == 0) ts->tv_sec -= 3600;
    return rc;
}
"""


def test_a_wall_clock_step_back_changes_no_duration(rj, tmp_path):
    source, shim = tmp_path / "shim.c", tmp_path / "shim.so"
    source.write_text(CLOCK_SHIM)
    if subprocess.run(
        ["cc", "-shared", "-fPIC", "-o", str(shim), str(source), "-ldl"], check=False, capture_output=True
    ).returncode:
        pytest.skip("no C compiler to build the clock shim")
    flag = rj.dir / "stepped"
    touch = py("import sys; open(sys.argv[1], 'w')", str(flag))
    rj.write(f'[jobs.step]\ncommand = {touch}\nexpected_duration = {{ min = "1h" }}\n')
    r = rj.run("step", env={"LD_PRELOAD": str(shim), "STEP_BACK_AFTER": str(flag)})
    assert flag.exists()
    end = r.one("run.end")
    assert end["status"] == "success" and 0 <= end["duration_s"] < 3600
    assert r.one("run.attempt")["duration_s"] >= 0
    # runjob's own clock stepped back an hour; the too-fast warning must still come from the true duration
    duration = r.one("run.duration")
    assert 0 <= duration["duration_s"] < 3600 and duration["duration_s"] == end["duration_s"]


def bare(rj, *args: str) -> Result:
    """`runjob ARGS` in cron's bare environment: no LANG, no LC_*."""
    given = ["HOME=/root", "LOGNAME=root", "SHELL=/bin/sh", "PATH=/usr/bin:/bin", f"RUNJOB_CONFIG={rj.config}"]
    proc = subprocess.run(
        ["env", "-i", *given, RUNJOB, *args],
        check=False,
        capture_output=True,
        cwd=rj.dir,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    return Result(proc)


CRON_ENV = {"HOME": "/root", "LOGNAME": "root", "SHELL": "/bin/sh", "PATH": "/usr/bin:/bin"}


@pytest.mark.parametrize("locale", [{}, {"LANG": "C"}, {"LC_CTYPE": "C.UTF-8"}])
def test_the_child_gets_exactly_the_environment_runjob_was_given(rj, locale):
    rj.write('[jobs.e]\ncommand = ["env"]\nsecrets = ["TOKEN"]\n[jobs.e.env]\nAPP = "prod"\nTOKEN = "s3cr3t-v4lue"\n')
    given = CRON_ENV | {"RUNJOB_CONFIG": str(rj.config)} | locale
    proc = subprocess.run(
        ["env", "-i", *(f"{k}={v}" for k, v in given.items()), RUNJOB, "e"],
        check=False,
        capture_output=True,
        cwd=rj.dir,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    r = Result(proc)
    assert r.code == 0, r.err
    seen = dict(line.split("=", 1) for line in (o["line"] for o in r.events("run.output")) if "=" in line)
    ids = {"RUNJOB_RUN_ID", "RUNJOB_JOB", "RUNJOB_CORRELATION_ID", "RUNJOB_ATTEMPT"}
    assert set(seen) == set(given) | {"APP", "TOKEN"} | ids
    assert {k: seen[k] for k in given} == given  # LC_CTYPE only when it was given
    dry = bare(rj, "run", "e", "--dry-run", "--format", "json")
    shown = json.loads(dry.out)["env"]
    expected = set(given) - set(locale) | {"APP", "TOKEN"} | ids
    assert set(shown) == expected and shown["TOKEN"] == "***" and "s3cr3t-v4lue" not in dry.out


CRLF_SCRIPT = b"#!/bin/sh\r\necho cleaned\r\n"


@pytest.mark.parametrize(
    ("content", "mode", "code", "says"),
    [
        (CRLF_SCRIPT, 0o755, 127, 'interpreter not found: "/bin/sh\\r" named in the #! line of ./job.sh'),
        (b"#!/no/such/shell\necho x\n", 0o755, 127, 'interpreter not found: "/no/such/shell"'),
        (b"#!@DIR@/plain\necho x\n", 0o755, 126, 'interpreter not executable: "@DIR@/plain"'),
        (b"#!/bin/sh\necho x\n", 0o644, 126, "command not executable"),
        (b"#!  /bin/sh -e\necho fine\n", 0o755, 0, None),
    ],
)
def test_dry_run_and_run_agree_on_what_can_be_executed(rj, content, mode, code, says):
    (rj.dir / "plain").write_text("not a program\n")  # mode 0644
    content, says = content.replace(b"@DIR@", bytes(rj.dir)), says and says.replace("@DIR@", str(rj.dir))
    script = rj.dir / "job.sh"
    script.write_bytes(content)
    script.chmod(mode)
    rj.write('[jobs.c]\ncommand = ["./job.sh"]\n')
    dry = rj.run("run", "c", "--dry-run", "--format", "json")
    plan = json.loads(dry.out)
    r = rj.run("c")
    assert dry.code == r.code == code
    if says is None:
        assert plan["executable_problem"] is None and r.one("run.end")["status"] == "success"
        return
    end = r.one("run.end")
    assert says in plan["executable_problem"] and says in end["message"] and says in end["error"]
    if content == CRLF_SCRIPT:
        assert "CRLF" in end["message"]


@pytest.mark.parametrize("where", ["param", "correlation_id"])
def test_bytes_that_are_not_utf8_are_a_one_line_usage_error(rj, where):
    rj.write('[jobs.p]\ncommand = ["echo", "{v}"]\n[jobs.p.params.v]\npattern = ".*"\n')
    env = {k.encode(): v.encode() for k, v in rj.env().items()}
    args = [RUNJOB.encode(), b"p", b"v=ok"]
    if where == "param":
        args[2] = b"v=caf\xe9"
    else:
        env[b"RUNJOB_CORRELATION_ID"] = b"id-\xff"
    proc = subprocess.run(
        args, check=False, capture_output=True, env=env, cwd=rj.dir, stdin=subprocess.DEVNULL, timeout=60
    )
    r = Result(proc)
    assert r.code == 2 and "Traceback" not in r.err and len(r.err.splitlines()) == 1, r.err
    assert "not valid UTF-8" in r.err and r.out == ""
    assert not (rj.state / "history.sqlite3").exists() or json.loads(rj.run("history", "--json").out) == []


def test_a_passthrough_write_to_a_closed_stderr_does_not_escape(rj):
    started, release = rj.dir / "started", rj.dir / "release"
    code = "import sys; sys.stderr.write('to stderr\\n'); sys.stderr.flush()\n" + HOLD
    rj.write(f'[jobs.p]\ncommand = {py(code, str(started), str(release))}\noutput = "passthrough"\n')
    proc = rj.popen("p")
    proc.stderr.close()  # runjob's stderr: nobody reads it, writing to it is EPIPE
    assert wait_for(started.exists, timeout=30)
    release.write_text("go")
    out = proc.stdout.read()
    assert proc.wait(timeout=60) == 0
    records = [json.loads(line) for line in out.decode().splitlines()]
    end = [x for x in records if x["event"] == "run.end"]
    assert end and end[0]["status"] == "success" and "to stderr" in end[0]["stderr_tail"]


# Prints far more than a pipe holds, as fast as it can, until killed.
FLOOD = "import sys\nline = 'x' * 200 + '\\n'\nwhile True: sys.stdout.write(line * 100)\n"


def test_a_stalled_reader_of_runjobs_stdout_does_not_stop_the_timeout(rj):
    rj.write(f'[jobs.flood]\ncommand = {py(FLOOD)}\ntimeout = "1s"\nkill_grace = "1s"\n')
    r, w = os.pipe()  # runjob's stdout: the test never reads it until runjob has exited
    proc = rj.popen("flood", stdout=w)
    os.close(w)
    try:
        assert proc.wait(timeout=90) == 124  # before the fix: blocked in write() for ever
        err = proc.stderr.read().decode()
        assert "is not being read" in err and "Traceback" not in err
        rows = json.loads(rj.run("history", "--json").out)
        assert [row["status"] for row in rows] == ["timeout"]
        assert rj.run("flood", "--timeout", "1s").code == 124  # the lock is free again
    finally:
        os.close(r)
        proc.kill()
        proc.wait()


def test_a_slow_reader_of_runjobs_stdout_gets_every_record_in_order(rj):
    printer = "for i in range(30000): print('line %06d ' % i + 'y' * 100)"
    rj.write(f"[jobs.many]\ncommand = {py(printer)}\n")
    proc = rj.popen("many")
    out = bytearray()  # grown in place: bytes += would copy all read so far on every chunk
    while chunk := proc.stdout.read(4096):  # small reads: the pipe is full most of the time
        out += chunk
    assert proc.wait(timeout=60) == 0
    records = [json.loads(line) for line in out.decode().splitlines()]
    lines = [x["line"] for x in records if x["event"] == "run.output"]
    assert lines == [f"line {i:06d} " + "y" * 100 for i in range(30000)]
    assert records[-1]["event"] == "run.end" and records[-1]["status"] == "success"


LIST_FDS = "import os\nfor fd in sorted(os.listdir('/proc/self/fd'), key=int):\n    print(fd, os.path.realpath('/proc/self/fd/' + fd))\n"


def test_descriptors_runjob_inherited_never_reach_the_child(rj):
    """A parent that leaves a descriptor open (not close-on-exec) when it starts runjob:
    the child gets 0-2 and the lock, nothing else (SPEC 12)."""
    leaked = rj.dir / "leaked.txt"
    rj.write(f"[jobs.fds]\ncommand = {py(LIST_FDS)}\n")
    with open(leaked, "w") as f:
        proc = subprocess.Popen(
            [RUNJOB, "fds"],
            env=rj.env(),
            cwd=rj.dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(f.fileno(),),
        )
        r = finish(proc)
    assert r.code == 0, r.err
    targets = [rec["line"].split(" ", 1)[1] for rec in r.events("run.output")]
    assert str(leaked) not in targets
    extra = [t for rec, t in zip(r.events("run.output"), targets, strict=True) if int(rec["line"].split()[0]) > 2]
    assert [t for t in extra if not t.startswith("/proc/")] == [str(rj.state / "locks" / "fds.lock")], extra
