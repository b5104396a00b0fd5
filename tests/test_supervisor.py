"""`runjob supervise NAME` (SPEC section 10) against real worker processes.

Every wait is on a record, a file or a process state, never on a sleep: a worker that must
stay up waits for a release file, and the limits under test (restart backoff, stale,
lifetime) fire on their own, which the test sees as records.
"""

from __future__ import annotations

import json
import signal
import subprocess

import pytest
import yaml
from conftest import PY, alive, py, q, wait_for

# A worker that writes its pid to argv[1] + its instance number (whole: written aside, then
# renamed), then waits for the release file argv[2].
HOLD_INSTANCE = (
    "import os, sys, time\npath = sys.argv[1] + os.environ['RUNJOB_INSTANCE']\n"
    "open(path + '.tmp', 'w').write(str(os.getpid()))\nos.rename(path + '.tmp', path)\n"
    "end = time.time() + 600\nwhile not os.path.exists(sys.argv[2]) and time.time() < end: time.sleep(0.02)\n"
)


def worker(rj, body: str, owners: str = "") -> None:
    rj.write(owners + "[workers.w]\n" + body)


def test_a_crash_loop_backs_off_then_gives_up_and_tells_the_owners(rj, tmp_path):
    told = tmp_path / "told"
    pager = py("import sys; open(sys.argv[1], 'w').write(sys.stdin.read())", str(told))
    owners = f"[owners.ops]\ncommand = {pager}\n"
    worker(
        rj,
        f"command = {py('import sys; print(chr(99) + chr(114) + chr(97) + chr(115) + chr(104)); sys.exit(3)')}\n"
        'restart = { delay = "10ms", max_delay = "30ms", burst = 3, within = "1h" }\n'
        'owners = { responsible = "ops" }\n',
        owners,
    )
    r = rj.run("supervise", "w")
    assert r.code == 1, r.out + r.err
    starts, exits = r.events("worker.start"), r.events("worker.exit")
    assert len(starts) == 4 and len(exits) == 4  # burst = 3: the first start and 3 restarts
    assert all(e["exit_code"] == 3 and e["reason"] == "exit" for e in exits)
    assert [e["delay_s"] for e in r.events("worker.restart")] == [0.01, 0.02, 0.03]  # doubling, capped
    giveup = r.one("worker.giveup")
    assert giveup["level"] == "error" and giveup["burst"] == 3
    assert [o["line"] for o in r.events("run.output")] == ["crash"] * 4
    assert r.one("notify.sent")["owner"] == "ops"
    payload = json.loads(told.read_text())
    assert payload["kind"] == "giveup" and payload["record"]["event"] == "worker.giveup"


def test_on_failure_does_not_restart_a_clean_exit(rj):
    worker(rj, f'command = {py("pass")}\ninstances = 2\nrestart = {{ policy = "on-failure" }}\n')
    r = rj.run("supervise", "w")
    assert r.code == 0, r.out + r.err
    assert len(r.events("worker.start")) == 2 and r.events("worker.restart") == []
    assert {e["instance"] for e in r.events("worker.exit")} == {0, 1}


def test_policy_always_restarts_a_clean_exit_too(rj):
    worker(rj, f'command = {py("pass")}\nrestart = {{ delay = "1ms", burst = 1 }}\n')
    r = rj.run("supervise", "w")
    assert r.code == 1 and len(r.events("worker.start")) == 2 and r.one("worker.restart")["restarts"] == 1


LEAK = (
    "import os, sys, time\nif os.environ['RUNJOB_ATTEMPT'] == '1':\n    hog = b'x' * (200 << 20)\n"
    "open(sys.argv[1] + os.environ['RUNJOB_ATTEMPT'], 'w').write('up')\n"
    "end = time.time() + 600\nwhile not os.path.exists(sys.argv[2]) and time.time() < end: time.sleep(0.02)\n"
)


def test_a_leak_past_memory_max_is_stopped_and_restarted(rj, tmp_path):
    release = tmp_path / "release"
    worker(
        rj,
        f'command = {py(LEAK, str(tmp_path / "up"), str(release))}\nmemory_max = "100MiB"\n'
        'stop_grace = "5s"\nrestart = { delay = "1ms" }\n',
    )
    live = rj.live("supervise", "w")
    try:
        exit_ = live.wait_event("worker.exit")
        assert exit_["reason"] == "memory" and exit_["exit_code"] == 128 + signal.SIGTERM
        assert live.wait_event("worker.restart")["reason"] == "memory"
        assert live.wait_event("worker.start", 2)["restarts"] == 1
        assert wait_for(lambda: (tmp_path / "up2").exists())  # the second life stays under the ceiling
    finally:
        live.send_signal(signal.SIGTERM)  # before the release: an instance released first would exit on its own
        r = live.finish()
        release.write_text("go")
    assert r.code == 0 and [e["reason"] for e in r.events("worker.exit")] == ["memory", "stop"]


def test_a_silent_worker_is_restarted_as_stale(rj, tmp_path):
    release = tmp_path / "release"
    worker(
        rj,
        f"command = {py(HOLD_INSTANCE, str(tmp_path / 'pid'), str(release))}\n"
        'heartbeat_timeout = "200ms"\nstop_grace = "5s"\nrestart = { delay = "1ms" }\n',
    )
    live = rj.live("supervise", "w")
    try:
        first = live.wait_event("worker.exit")
        assert first["reason"] == "stale" and live.wait_event("worker.restart")["reason"] == "stale"
        assert not alive(first["pid"])
    finally:
        live.send_signal(signal.SIGTERM)
        r = live.finish()
        release.write_text("go")
    assert r.code == 0


TOUCHER = (
    "import os, sys, time\nhb = os.environ['RUNJOB_HEARTBEAT_FILE']\nend = time.time() + 600\n"
    "while not os.path.exists(sys.argv[2]) and time.time() < end:\n"
    "    if os.path.exists(sys.argv[1]):\n        os.utime(hb)\n        os.rename(sys.argv[1], sys.argv[1] + '.done')\n"
    "    time.sleep(0.02)\n"
)


def test_a_heartbeat_touch_is_progress_and_status_shows_the_instance(rj, tmp_path):
    ask, release = tmp_path / "touch", tmp_path / "release"
    worker(rj, f"command = {py(TOUCHER, str(ask), str(release))}\ninstances = 2\n")
    live = rj.live("supervise", "w")
    try:
        starts = [live.wait_event("worker.start", n) for n in (1, 2)]

        def rows() -> dict:
            (row,) = json.loads(rj.run("status", "--json").out)[-1:]
            return row

        assert wait_for(lambda: rows()["running"] and all(i["rss_bytes"] for i in rows()["instances"]))
        row = rows()
        assert row["worker"] == "w" and row["supervisor_pid"] == live.proc.pid and row["instances_wanted"] == 2
        assert [(i["pid"], i["restarts"]) for i in row["instances"]] == [(s["pid"], 0) for s in starts]
        assert all(i["uptime_s"] is not None and i["last_progress_at"] for i in row["instances"])
        before = [i["last_progress_at"] for i in row["instances"]]
        ask.write_text("x")  # one of the two touches its heartbeat file
        assert wait_for(lambda: (tmp_path / "touch.done").exists())
        assert wait_for(lambda: [i["last_progress_at"] for i in rows()["instances"]] != before)
    finally:
        live.send_signal(signal.SIGTERM)
        live.finish()
        release.write_text("go")
    assert json.loads(rj.run("status", "--json").out)[-1]["running"] is False


def test_max_lifetime_recycles_without_backoff(rj, tmp_path):
    release = tmp_path / "release"
    worker(
        rj,
        f'command = {py(HOLD_INSTANCE, str(tmp_path / "pid"), str(release))}\nmax_lifetime = "100ms"\n'
        'restart = { delay = "1h", max_delay = "1h", burst = 0 }\n',
    )
    live = rj.live("supervise", "w")
    try:
        assert live.wait_event("worker.exit")["reason"] == "lifetime"
        restart = live.wait_event("worker.restart")
        assert restart["delay_s"] == 0 and restart["reason"] == "lifetime"
        live.wait_event("worker.start", 2)  # burst = 0 and still restarted: a recycle is not a failure
    finally:
        live.send_signal(signal.SIGTERM)
        r = live.finish()
        release.write_text("go")
    assert r.code == 0 and r.events("worker.giveup") == []


SLOW_STOP = (
    "import os, signal, sys, time\n"
    "def stop(*_):\n    open(sys.argv[1] + os.environ['RUNJOB_INSTANCE'], 'w').write('term')\n"
    "    end = time.time() + 600\n"
    "    while not os.path.exists(sys.argv[2]) and time.time() < end: time.sleep(0.02)\n"
    "    print('drained', flush=True)\n    sys.exit(0)\n"
    "signal.signal(signal.SIGTERM, stop)\nprint('ready', flush=True)\n"
    "while True: time.sleep(1)\n"
)


def test_sigterm_stops_every_instance_gracefully_and_exits_0(rj, tmp_path):
    got, release = tmp_path / "got", tmp_path / "release"
    worker(rj, f'command = {py(SLOW_STOP, str(got), str(release))}\ninstances = 2\nstop_grace = "60s"\n')
    live = rj.live("supervise", "w")
    live.wait_event("run.output", 2)  # both installed their handler
    live.send_signal(signal.SIGTERM)
    assert wait_for(lambda: (tmp_path / "got0").exists() and (tmp_path / "got1").exists())
    assert live.running()  # it waits for the instances inside their grace
    release.write_text("go")
    r = live.finish()
    assert r.code == 0, r.out + r.err
    assert sorted((e["reason"], e["exit_code"]) for e in r.events("worker.exit")) == [("stop", 0), ("stop", 0)]
    assert [o["line"] for o in r.events("run.output")].count("drained") == 2
    assert r.events("worker.restart") == []


IGNORE_TERM = (
    "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    "print('ready', flush=True)\nend = time.time() + 600\nwhile time.time() < end: time.sleep(0.05)\n"
)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_instance_ignoring_stop_signal_is_killed_after_stop_grace(rj, signum):
    worker(rj, f'command = {py(IGNORE_TERM)}\nstop_signal = "INT"\nstop_grace = "100ms"\n')
    live = rj.live("supervise", "w")
    live.wait_event("run.output")
    live.send_signal(signum)
    r = live.finish()
    assert r.code == 0 and r.one("worker.exit")["exit_code"] == 128 + signal.SIGKILL


def test_sigkill_of_runjob_leaves_no_instance_running(rj, tmp_path):
    release = tmp_path / "release"
    worker(rj, f"command = {py(HOLD_INSTANCE, str(tmp_path / 'pid'), str(release))}\ninstances = 2\n")
    live = rj.live("supervise", "w")
    try:
        assert wait_for(lambda: (tmp_path / "pid0").exists() and (tmp_path / "pid1").exists())
        pids = [int((tmp_path / f"pid{i}").read_text()) for i in (0, 1)]
        live.send_signal(signal.SIGKILL)
        live.finish()
        assert wait_for(lambda: not any(alive(p) for p in pids))  # PR_SET_PDEATHSIG
    finally:
        release.write_text("go")


def test_heartbeat_file_is_private_and_output_is_masked(rj, tmp_path):
    code = "import os; print(os.environ['TOKEN']); print(oct(os.stat(os.environ['RUNJOB_HEARTBEAT_FILE']).st_mode & 0o777))"
    worker(rj, f'command = {py(code)}\nsecrets = ["TOKEN"]\nrestart = {{ policy = "on-failure" }}\n')
    r = rj.run("supervise", "w", env={"TOKEN": "hunter2-secret"})
    assert r.code == 0 and "hunter2-secret" not in r.out
    assert [o["line"] for o in r.events("run.output")][1] == "0o600"


@pytest.mark.parametrize(
    "body, problems",
    [
        ('command = ["x"]\nmemory_max = "lots"\n', ["workers.w.memory_max: bad size"]),
        (
            'command = ["x"]\nrestart = { policy = "never", burst = -1 }\n',
            ["workers.w.restart.policy", "workers.w.restart.burst"],
        ),
        ('command = ["x"]\ntimeout = "1m"\n', ["workers.w.timeout: unknown key"]),
        ('command = ["x"]\nstop_signal = "STOP"\ninstances = 0\n', ["workers.w.stop_signal", "workers.w.instances"]),
        (
            'command = ["x"]\nheartbeat_timeout = "soon"\nowners = { responsible = "nobody" }\n',
            ["workers.w.heartbeat_timeout", "workers.w.owners.responsible"],
        ),
        ("instances = 1\n", ["workers.w.command: required"]),
    ],
)
def test_bad_worker_keys_are_config_errors_with_their_paths(rj, body, problems):
    worker(rj, body)
    r = rj.run("validate")
    assert r.code == 78, r.out + r.err
    for problem in problems:
        assert problem in r.err, r.err
    assert "Traceback" not in r.err


def test_defaults_do_not_apply_to_workers_and_unknown_worker_is_usage(rj, tmp_path):
    rj.write(
        f'[defaults]\nstate_dir = {q(str(rj.state))}\ntimeout = "1ms"\n'
        f'[workers.w]\ncommand = {py("print(chr(108))")}\nrestart = {{ policy = "on-failure" }}\n'
    )
    r = rj.run("supervise", "w")
    assert r.code == 0 and r.one("run.output")["line"] == "l" and r.one("worker.exit")["exit_code"] == 0
    r = rj.run("supervise", "nope")
    assert r.code == 2 and 'unknown worker "nope"' in r.err


def test_a_worker_may_not_share_a_job_name(rj):
    rj.write('[jobs.w]\ncommand = ["true"]\n[workers.w]\ncommand = ["true"]\n')
    r = rj.run("validate")
    assert r.code == 78 and "workers.w:" in r.err


WORKER = (
    'command = ["bin/consume", "async"]\ninstances = 3\nstop_grace = "30s"\nmemory_max = "512MiB"\n'
    'restart = { policy = "on-failure", delay = "2s", burst = 4, within = "90s" }\n'
)


def test_export_systemd_writes_a_verified_service(rj, tmp_path):
    if not subprocess.run(["which", "systemd-analyze"], capture_output=True).returncode == 0:
        pytest.skip("systemd-analyze is not installed")
    worker(rj, WORKER)
    out = tmp_path / "units"
    assert rj.run("export", "systemd", "--out", str(out)).code == 0
    unit = out / "runjob-worker-w.service"
    text = unit.read_text()
    for line in (
        "Restart=on-failure",
        "RestartSec=2000ms",
        "StartLimitBurst=5",
        "StartLimitIntervalSec=90",
        f"MemoryMax={3 * 512 * 2**20 + 64 * 2**20}",
        "KillMode=mixed",
    ):
        assert line + "\n" in text, text
    assert " supervise w\n" in text
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert verify.returncode == 0 and "runjob-worker-w" not in verify.stderr, verify.stderr


def test_export_kubernetes_writes_a_valid_deployment(rj):
    kv = pytest.importorskip("kubernetes_validate")
    worker(rj, WORKER)
    r = rj.run("export", "kubernetes")
    assert r.code == 0, r.err
    docs = [d for d in yaml.safe_load_all(r.out) if d and d["kind"] == "Deployment"]
    (doc,) = docs
    kv.validate(doc, kv.latest_version(), strict=True)
    pod = doc["spec"]["template"]["spec"]
    assert doc["spec"]["replicas"] == 3 and pod["terminationGracePeriodSeconds"] >= 30
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["memory"] == "576Mi"
    assert container["command"] == ["runjob", "supervise", "w", "--instances", "1"]


def test_schema_describes_workers(rj):
    import jsonschema

    schema = json.loads(rj.run("schema").out)
    doc = {"workers": {"w": {"command": ["x"], "instances": 2, "restart": {"policy": "always"}}}}
    jsonschema.validate(doc, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"workers": {"w": {"command": ["x"], "timeout": "1s"}}}, schema)


def test_a_job_never_gets_a_worker_secret(rj):
    code = "import os; print(os.environ.get('W_TOKEN', 'absent'))"
    rj.write(f'[jobs.j]\ncommand = {py(code)}\n[workers.w]\ncommand = ["true"]\nsecrets = ["W_TOKEN"]\n')
    for _ in range(2):  # the second run reads the registry cache
        r = rj.run("j", env={"W_TOKEN": "s3cret-value"})
        assert r.code == 0 and r.one("run.output")["line"] == "absent"


def test_a_json_line_is_kept_structured_and_a_huge_line_is_cut(rj):
    code = "import json; print(json.dumps({'msg': 'took order', 'level': 'warning', 'id': 7})); print('y' * 70000)"
    worker(rj, f'command = {json.dumps([PY, "-c", code])}\nrestart = {{ policy = "on-failure" }}\n')  # braces literal
    r = rj.run("supervise", "w")
    assert r.code == 0, r.out[-3000:] + r.err
    structured, long = r.events("run.output")
    assert structured["data"] == {"msg": "took order", "level": "warning", "id": 7} and "line" not in structured
    assert structured["message"] == "took order" and structured["level"] == "warning"
    assert long["truncated"] is True and set(long["line"]) == {"y"} and long["instance"] == 0
    assert all(len(line.encode()) < 16 * 1024 for line in r.out.splitlines())  # the documented record size


FLOOD = (
    "import os, sys, time\npath = sys.argv[1]\nopen(path + '.tmp', 'w').write(str(os.getpid()))\n"
    "os.rename(path + '.tmp', path)\nend = time.time() + 600\n"
    "while not os.path.exists(sys.argv[2]) and time.time() < end: print('x' * 1000, flush=True)\n"
)


def test_a_stalled_reader_of_runjob_never_stops_the_limits(rj, tmp_path):
    pid_file, release = tmp_path / "pid", tmp_path / "release"
    worker(rj, f'command = {py(FLOOD, str(pid_file), str(release))}\nmax_lifetime = "300ms"\n')
    proc = rj.popen("supervise", "w")  # its stdout is a pipe nobody reads until the end
    try:
        assert wait_for(pid_file.exists)
        first = int(pid_file.read_text())
        assert wait_for(lambda: not alive(first))  # recycled while the records wait for the reader
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        release.write_text("go")
    assert proc.returncode == 0
    records = [json.loads(line) for line in out.splitlines()]
    events = [r["event"] for r in records if r["event"].startswith("worker.")]
    reasons = [r["reason"] for r in records if r["event"] == "worker.exit"]
    # Held for the reader, in order, none lost: every start has its exit, the first a recycle.
    # The last one is "stop", or "lifetime" when the SIGTERM came while a recycle was already
    # under way or between a recycle and its restart (both are what happened: no race to lose).
    assert reasons[0] == "lifetime" and reasons[-1] in ("stop", "lifetime")
    assert events.count("worker.start") == len(reasons) and "worker.stop" in events
    assert [r["seq"] for r in records] == list(range(len(records)))


def test_a_missing_program_is_exit_127_and_gives_up(rj):
    worker(rj, 'command = ["/no/such/worker"]\nrestart = { delay = "1ms", burst = 1 }\n')
    r = rj.run("supervise", "w")
    assert r.code == 1 and "Traceback" not in r.err
    assert [e["exit_code"] for e in r.events("worker.exit")] == [127, 127] and r.one("worker.giveup")


# A worker whose leader starts a helper in its own process group: the helper writes its pid
# to argv[1] and waits for the release file argv[2]; the leader waits too.
FORKER = (
    "import os, subprocess, sys, time\n"
    "subprocess.Popen([sys.executable, '-c', sys.argv[3], sys.argv[1], sys.argv[2]])\n"
    "end = time.time() + 600\nwhile not os.path.exists(sys.argv[2]) and time.time() < end: time.sleep(0.02)\n"
)
HELPER = (
    "import os, sys, time\nopen(sys.argv[1] + '.tmp', 'w').write(str(os.getpid()))\n"
    "os.rename(sys.argv[1] + '.tmp', sys.argv[1])\nend = time.time() + 600\n"
    "while not os.path.exists(sys.argv[2]) and time.time() < end: time.sleep(0.02)\n"
)


def test_the_next_supervise_kills_what_a_sigkilled_one_left_behind(rj, tmp_path):
    helper_pid, release = tmp_path / "helper", tmp_path / "release"
    worker(rj, f"command = {json.dumps([PY, '-c', FORKER, str(helper_pid), str(release), HELPER])}\n")
    first = rj.live("supervise", "w")
    try:
        assert wait_for(helper_pid.exists)
        helper = int(helper_pid.read_text())
        leader = first.wait_event("worker.start")["pid"]
        assert wait_for(lambda: json.loads(rj.run("status", "--json").out)[-1]["running"])  # the state file has it
        first.send_signal(signal.SIGKILL)
        first.finish()
        assert wait_for(lambda: not alive(leader))  # PR_SET_PDEATHSIG
        helper_pid.unlink()
        second = rj.live("supervise", "w")
        left = second.wait_event("worker.leftovers")
        assert left["pgids"] == [leader] and wait_for(lambda: not alive(helper))
        assert wait_for(helper_pid.exists)  # the new instance's helper
        second.send_signal(signal.SIGTERM)
        assert second.finish().code == 0
    finally:
        release.write_text("go")


def test_a_second_signal_skips_the_rest_of_stop_grace(rj):
    worker(rj, f'command = {py(IGNORE_TERM)}\nstop_signal = "INT"\nstop_grace = "1h"\n')
    live = rj.live("supervise", "w")
    live.wait_event("run.output")
    live.send_signal(signal.SIGTERM)
    live.wait_event("worker.stop")
    live.send_signal(signal.SIGINT)
    r = live.finish()
    assert r.code == 0 and r.one("worker.exit")["exit_code"] == 128 + signal.SIGKILL
    assert len(r.events("worker.stop")) == 2


def test_the_rest_of_a_cut_line_is_no_record_however_the_pipe_chunks_it(rj, tmp_path):
    """A worker that writes more than a line may hold, waits, then ends the line: the cut comes
    first, and what follows up to the newline is dropped, as for jobs, never a record of its own."""
    release = tmp_path / "release"
    code = (
        "import os, sys, time\nsys.stdout.write('y' * 70000); sys.stdout.flush()\n"
        "end = time.time() + 600\nwhile not os.path.exists(sys.argv[1]) and time.time() < end: time.sleep(0.02)\n"
        "print('z' * 5000); print('after')\n"
    )
    worker(rj, f'command = {json.dumps([PY, "-c", code, str(release)])}\nrestart = {{ policy = "on-failure" }}\n')
    live = rj.live("supervise", "w")
    cut = live.wait_event("run.output")  # the line's first 64 KiB arrived without its end
    release.write_text("go")
    r = live.finish()
    assert r.code == 0, r.err
    assert cut["truncated"] is True and set(cut["line"]) == {"y"}
    assert [o["line"] for o in r.events("run.output")][1:] == ["after"]
