"""Reliability under concurrency, faults and hostile input (never overlaps, never loses a
line, never hides an exit code, never crashes with a traceback)."""

from __future__ import annotations

import json
import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest
import tomli_w
from conftest import HOLD, PY, Env, alive, finish, py, q, race, ready_within_timeout, wait_for
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from runjob.errors import ConfigError
from runjob.registry import lock_keys, schema, validate

TOUCH = py("open('ran', 'w')")
SAVE_STDIN = "import sys; open(sys.argv[1], 'wb').write(sys.stdin.buffer.read())"


# A thousand launches of the interpreter: minutes on a loaded two-core machine. The limits
# only keep a hung run from hanging the suite; nothing here waits for time to pass.
@pytest.mark.timeout(1800)
def test_fifty_simultaneous_launches_twenty_rounds(rj):
    release = rj.dir / "release"
    rj.write(f"[jobs.s]\ncommand = {py(HOLD, str(rj.dir / 'started'), str(release))}\n")
    for _ in range(20):
        release.unlink(missing_ok=True)
        results = race([rj.popen("s") for _ in range(50)], release, timeout=600)
        assert [r.code for r in results] == [0] * 50, [r.err for r in results if r.code]
        assert sum(bool(r.events("run.end")) for r in results) == 1
        assert sum(bool(r.events("lock.busy")) for r in results) == 49
    rows = json.loads(rj.run("history", "--limit", "5000", "--json").out)
    assert len(rows) == 1000
    assert sum(r["status"] == "success" for r in rows) == 20 and sum(r["status"] == "skipped" for r in rows) == 980


def test_eight_jobs_ten_thousand_lines_each_into_one_log_file(rj):
    printer = "import sys\nfor i in range(10000): print('job %s line %05d ' % (sys.argv[1], i) + 'x' * 40)"
    rj.write(
        f'[defaults]\nstate_dir = "state"\nlog_file = "shared.log"\n'
        f'[jobs.p]\ncommand = {py(printer, "{n}")}\nlock_key = "p.{{n}}"\n[jobs.p.params.n]\npattern = "[0-9]"\n'
    )
    procs = [rj.popen("p", f"n={n}") for n in range(8)]
    assert [finish(p).code for p in procs] == [0] * 8
    raw = (rj.dir / "shared.log").read_bytes()
    assert raw.endswith(b"\n")
    records = [json.loads(line) for line in raw.split(b"\n")[:-1]]  # every line parses: none torn
    for n in range(8):
        lines = [r["line"] for r in records if r["event"] == "run.output" and r["line"].startswith(f"job {n} ")]
        assert lines == [f"job {n} line {i:05d} " + "x" * 40 for i in range(10000)]  # none lost, in order
    assert sum(r["event"] == "run.end" for r in records) == 8


def test_daemon_holding_the_pipe_past_the_timeout(rj):
    """The child leaves a daemon holding runjob's pipes, then holds on itself until killed."""
    daemon_pid, release = rj.dir / "daemon.pid", rj.dir / "release"
    code = (
        "import os, subprocess, sys, time; d = subprocess.Popen(sys.argv[1:], start_new_session=True); "
        "open(sys.argv[-1] + '.tmp', 'w').write(str(d.pid)); os.rename(sys.argv[-1] + '.tmp', sys.argv[-1]); "
        "print('forked', flush=True); time.sleep(600)"
    )

    def attempt(timeout):
        rj.write(
            f"[jobs.d]\ncommand = {py(code, PY, '-c', HOLD, str(rj.dir / 'daemon'), str(release), str(daemon_pid))}\n"
            f'timeout = "{timeout}"\nkill_grace = "200ms"\n'
        )
        return rj.run("d", timeout=90)  # the daemon holds the pipes until released: only runjob can end this

    r = ready_within_timeout(daemon_pid, attempt)
    assert r.code == 124 and r.one("run.end")["status"] == "timeout"
    daemon = int(daemon_pid.read_text())
    assert alive(daemon)  # it still holds the pipes runjob stopped reading
    release.write_text("go")
    assert wait_for(lambda: not alive(daemon))


@contextmanager
def mounted_tmpfs(path: Path, size: str = "64k", read_only: bool = False):
    path.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    ).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_state_dir_on_a_read_only_filesystem(rj):
    with mounted_tmpfs(rj.dir / "ro", read_only=True) as ro:
        rj.write(f"[defaults]\nstate_dir = {q(str(ro / 'state'))}\n[jobs.x]\ncommand = {TOUCH}\n")
        r = rj.run("x")
        assert r.code == 125 and "Read-only file system" in r.err and len(r.err.splitlines()) == 1
        assert not (rj.dir / "ran").exists() and not r.events("run.start")


def test_state_dir_on_a_full_filesystem(rj):
    with mounted_tmpfs(rj.dir / "full", size="32k") as full:
        rj.write(f"[defaults]\nstate_dir = {q(str(full / 'state'))}\n[jobs.x]\ncommand = {TOUCH}\n")
        (full / "filler").write_bytes(b"\0" * 28 * 1024)
        with pytest.raises(OSError):
            (full / "more").write_bytes(b"\0" * 8 * 1024)
        r = rj.run("x")
        assert r.code == 125 and "history" in r.err and len(r.err.splitlines()) == 1
        assert not (rj.dir / "ran").exists() and not r.events("run.start")


def test_disk_full_on_the_log_file_keeps_the_exit_code(rj):
    code = "import sys; [print('line', i) for i in range(100)]; sys.exit(7)"
    rj.write(f'[jobs.x]\ncommand = {py(code)}\nlog_file = "/dev/full"\n')
    r = rj.run("x")
    assert r.code == 7  # the job's truth survives losing its records
    assert r.err.count("No space left on device") == 1 and "/dev/full" in r.err
    rows = json.loads(rj.run("history", "--json").out)
    assert rows[0]["exit_code"] == 7 and rows[0]["status"] == "failure"


# Hostile input: random registries and values never produce a traceback.

keys = st.sampled_from(sorted(set(schema.JOB) | {"bogus", "", "päram", "a.b", "../x"}))
leaf = st.one_of(
    st.text(max_size=20),
    st.integers(-5, 10**6),
    st.booleans(),
    st.floats(allow_nan=False),
    st.lists(st.text(max_size=8), max_size=3),
    st.lists(st.integers(-3, 300), max_size=3),
)
job_body = st.dictionaries(keys, st.one_of(leaf, st.dictionaries(st.text(max_size=8), leaf, max_size=3)), max_size=8)
registries = st.fixed_dictionaries(
    {"jobs": st.dictionaries(st.text(max_size=12), job_body, max_size=3)},
    optional={
        "defaults": st.dictionaries(keys, leaf, max_size=4),
        "owners": st.dictionaries(
            st.text(max_size=8), st.dictionaries(st.sampled_from(["command", "webhook", "x"]), leaf), max_size=2
        ),
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(registries)
def test_random_registries_load_or_give_config_errors(doc):
    text = tomli_w.dumps(doc)
    try:
        registry = validate.parse_string(text, "fuzz.toml")
    except ConfigError as e:
        assert e.errors and all(isinstance(x, str) and x and "\n" not in x for x in e.errors)
        return
    for job in registry.jobs.values():
        assert isinstance(job.command, list) and job.command


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@example(doc={"jobs": {"a\0b": {"command": ["true"]}}}, words=[])  # a NUL the command line cannot carry
@given(
    doc=registries,
    words=st.lists(
        st.text(min_size=1, max_size=12).filter(lambda w: not w.startswith("-") and "\0" not in w), max_size=3
    ),
)  # argv cannot hold NUL
def test_random_registries_and_words_never_traceback(tmp_path_factory, doc, words):
    env = Env(tmp_path_factory.mktemp("fuzz"))
    env.config.write_text(tomli_w.dumps(doc))
    name = next(iter(doc["jobs"]), "x")
    runs = [["validate"]] + ([["run", name, "--dry-run", *words]] if "\0" not in name else [])  # argv cannot hold NUL
    for args in runs:
        r = env.run(*args, timeout=30)
        assert "Traceback" not in r.err and r.code in (0, 2, 78, 126, 127), (args, r.code, r.err)
        if r.code in (2, 78):
            assert r.err.startswith("runjob: ") or "Usage:" in r.err


@given(st.text(max_size=300))
def test_hostile_lock_keys_are_rejected(key):
    problem = lock_keys.problem(key)
    if problem is None:
        assert "/" not in key and ".." not in key and "\0" not in key and 0 < len(key) <= 200
        assert key[0].isalnum() and key.isascii()


@pytest.mark.parametrize("key", ["../etc/passwd", "a/b", "/abs", "a\0b", "x" * 201, "", ".hidden", "a..b", "-x"])
def test_specific_bad_lock_keys(key):
    assert lock_keys.problem(key) is not None


@pytest.mark.parametrize("name", ["../x", "a/b", "a\0b", "A", "x" * 5 + "/", ".x", "run", "tick"])
def test_bad_job_names(name):
    with pytest.raises(ConfigError):
        validate.parse_string(tomli_w.dumps({"jobs": {name: {"command": ["true"]}}}))


# Prefixed like real tokens: a bare random word can be record structure ("stderr", "info")
# and would show up in every record without any leak.
secret_values = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=6, max_size=24).map(
    lambda s: "tok-" + s
)


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(secret=secret_values)
def test_secret_values_never_reach_a_record(tmp_path_factory, secret):
    env = Env(tmp_path_factory.mktemp("secret"))
    code = (
        "import os, sys; s = os.environ['API_TOKEN']; print('token', s); print(s * 2, file=sys.stderr); "
        "print('{\"t\": \"' + s.replace(chr(92), '').replace(chr(34), '') + '\"}'); sys.exit(1)"
    )
    env.write(
        f"[owners.ops]\ncommand = {py(SAVE_STDIN, str(env.dir / 'page'))}\n"
        f"[jobs.s]\ncommand = {py(code, '--token=' + secret.replace('{', '{{').replace('}', '}}'))}\n"
        f'secrets = ["API_TOKEN"]\nowners = {{ responsible = "ops" }}\n'
    )
    r = env.run("s", env={"API_TOKEN": secret})
    assert r.code == 1
    dry = env.run("run", "s", "--dry-run", env={"API_TOKEN": secret})
    history = env.run("history", "--json")
    for text in (r.out, dry.out, history.out, (env.dir / "page").read_text()):
        assert secret not in text and json.dumps(secret)[1:-1] not in text
    assert r.one("run.start")["command"][-1] == "--token=***"
    assert "***" in r.one("run.end")["stderr_tail"]
    assert os.environ.get("API_TOKEN") != secret
