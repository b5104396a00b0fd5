"""Network steps (SPEC sections 5 and 12): one deadline per exchange, cut short by a signal,
contained whatever the peer answers, URLs logged as scheme and host, and owners' commands
and children given no secret they were not given."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading

import pytest
from conftest import HOLD, PY, alive, finish, py, q, wait_for

TOKEN = "tok-9f8e7d6c5b4a"
TOUCH = "import sys; open(sys.argv[1], 'w')"


class RawServer:
    """A TCP server on 127.0.0.1 that answers every connection in one misbehaving way."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.connections = 0
        self.closed = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._answer, args=(conn, self.connections), daemon=True).start()

    def _answer(self, conn: socket.socket, number: int) -> None:
        with conn:
            try:
                conn.recv(65536)
                if self.mode == "garbage" or (self.mode == "trickle-first" and number > 1):
                    conn.sendall(b"garbage that is no HTTP\r\n\r\n")
                    return
                while not self.closed.wait(0.3):  # "trickle": one byte at a time, never a whole answer
                    conn.sendall(b"H")
            except OSError:
                return

    def close(self) -> None:
        self.closed.set()
        self.sock.close()


@pytest.fixture
def trickle():
    server = RawServer("trickle")
    yield server
    server.close()


@pytest.fixture
def trickle_first():
    server = RawServer("trickle-first")
    yield server
    server.close()


@pytest.fixture
def garbage():
    server = RawServer("garbage")
    yield server
    server.close()


def test_a_trickling_ping_endpoint_is_cut_at_one_deadline(rj, trickle):
    marker = rj.dir / "ran"
    rj.write(
        f'[defaults]\nstate_dir = {q(str(rj.state))}\nping_timeout = "1s"\n'
        f"[jobs.j]\ncommand = {py(TOUCH, str(marker))}\n"
        f"ping_url = {q(trickle.url + '/ping/' + TOKEN)}\n"
    )
    r = rj.run("j", timeout=60)  # a hang guard only: per-read timeouts never fire on a trickle
    assert r.code == 0 and marker.exists() and r.one("run.end")["status"] == "success"
    errors = r.events("ping.error")
    assert len(errors) == 2 and all("no complete answer within 1s" in e["error"] for e in errors)
    assert all(e["url"] == trickle.url for e in errors) and TOKEN not in r.out + r.err


def test_a_signal_cuts_a_hanging_start_ping_short(rj, trickle_first):
    marker = rj.dir / "ran"
    rj.write(
        f'[defaults]\nstate_dir = {q(str(rj.state))}\nping_timeout = "300s"\n'
        f"[jobs.j]\ncommand = {py(TOUCH, str(marker))}\n"
        f"ping_url = {q(trickle_first.url)}\n"
    )
    proc = rj.popen("j")
    assert wait_for(lambda: trickle_first.connections >= 1)  # the start ping is under way, before the child
    proc.send_signal(signal.SIGTERM)
    r = finish(proc, timeout=60)  # hang guard: without the fix the 300 s deadline (or forever) holds it
    assert r.code == 143 and r.one("run.end")["status"] == "killed"
    assert any("cut short by a signal" in e["error"] for e in r.events("ping.error"))


def test_a_garbage_answer_to_a_ping_never_keeps_the_job_from_running(rj, garbage):
    marker = rj.dir / "ran"
    rj.write(f"[jobs.j]\ncommand = {py(TOUCH, str(marker))}\nping_url = {q(garbage.url + '/' + TOKEN)}\n")
    r = rj.run("j")
    assert r.code == 0 and marker.exists() and "Traceback" not in r.err, r.err
    errors = r.events("ping.error")
    assert len(errors) == 2 and all(e["url"] == garbage.url for e in errors)
    assert TOKEN not in r.out + r.err


def test_webhook_errors_name_scheme_and_host_only(rj, http):
    http.status = 500
    rj.write(
        f"[owners.dom]\nwebhook = {q(http.url + '/hooks/' + TOKEN + '?key=' + TOKEN)}\n"
        f'[jobs.j]\ncommand = {py("import sys; sys.exit(4)")}\nowners = {{ accountable = "dom" }}\n'
    )
    r = rj.run("j")
    assert r.code == 4
    error = r.one("notify.error")["error"]
    assert error == f"HTTP 500 from {http.url}" and TOKEN not in r.out + r.err


def hanging_owners(rj, http, limit: str) -> None:
    started, release = rj.dir / "notifier-started", rj.dir / "release"
    notifier = (
        "import os, sys, time\nopen(sys.argv[1], 'w').write(str(os.getpid()))\n"
        "end = time.time() + 600\nwhile not os.path.exists(sys.argv[2]) and time.time() < end: time.sleep(0.02)\n"
    )
    rj.write(
        f'[defaults]\nstate_dir = {q(str(rj.state))}\nnotify_timeout = "{limit}"\n'
        f"[owners.ops]\ncommand = {py(notifier, str(started), str(release))}\n"
        f"[owners.dom]\nwebhook = {q(http.url)}\n"
        f'[jobs.j]\ncommand = {py("import sys; sys.exit(5)")}\nowners = {{ responsible = "ops", accountable = "dom" }}\n'
    )


def test_hanging_notifiers_share_one_settable_deadline(rj, http):
    http.delay = 120
    hanging_owners(rj, http, "1s")
    r = rj.run("j", timeout=60)  # a hang guard only
    (rj.dir / "release").write_text("go")
    assert r.code == 5
    errors = {e["channel"]: e["error"] for e in r.events("notify.error")}
    assert "did not finish within 1s (killed)" in errors["command"]
    assert "no complete answer within 1s" in errors["webhook"]
    assert not alive(int((rj.dir / "notifier-started").read_text()))  # its process group was killed


def test_a_signal_cuts_the_notifications_short(rj, http):
    http.delay = 120
    hanging_owners(rj, http, "300s")
    proc = rj.popen("j")
    assert wait_for(lambda: (rj.dir / "notifier-started").exists() and http.requests)
    proc.send_signal(signal.SIGTERM)
    r = finish(proc, timeout=60)  # hang guard: the 300 s deadline would hold it
    (rj.dir / "release").write_text("go")
    assert r.code == 5  # the run had ended: its exit code stands
    errors = {e["channel"]: e["error"] for e in r.events("notify.error")}
    assert "cut short by a signal" in errors["command"] and "cut short by a signal" in errors["webhook"]


def test_a_notifiers_stderr_is_held_in_bounded_memory(rj):
    """The notifier floods stderr, then reads runjob's peak RSS (runjob is its parent) before it fails."""
    peak = rj.dir / "peak"
    flood = (
        "import os, sys\nblock = b'e' * (1 << 20)\nfor _ in range(300): os.write(2, block)\n"
        "hwm = [l for l in open('/proc/%d/status' % os.getppid()) if l.startswith('VmHWM')][0]\n"
        "open(sys.argv[1], 'w').write(hwm.split()[1])\nos.write(2, b'the last words')\nsys.exit(9)\n"
    )
    rj.write(
        f"[owners.ops]\ncommand = {py(flood, str(peak))}\n"
        f'[jobs.j]\ncommand = {py("import sys; sys.exit(3)")}\nowners = {{ responsible = "ops" }}\n'
    )
    r = rj.run("j", timeout=120)
    error = r.one("notify.error")["error"]
    assert r.code == 3 and "exited with 9" in error and error.endswith("the last words")
    assert int(peak.read_text()) < 150 * 1024  # kB: not the 300 MiB it was sent


def env_dump(path) -> str:
    return f"import json, os, sys; open({str(path)!r}, 'w').write(json.dumps(dict(os.environ)))"


def test_owners_commands_and_children_get_no_secret_they_were_not_given(rj):
    notifier_env, child_env, other_env = rj.dir / "notifier.json", rj.dir / "child.json", rj.dir / "other.json"
    rj.write(
        f"[owners.ops]\ncommand = {py(env_dump(notifier_env))}\n"
        f'[jobs.a]\ncommand = {py(env_dump(child_env) + "; sys.exit(2)")}\nsecrets = ["A_TOKEN"]\n'
        'owners = { responsible = "ops" }\n'
        f"[jobs.b]\ncommand = {py(env_dump(other_env))}\n"
        '[jobs.c]\ncommand = ["true"]\nlock_backend = "redis://127.0.0.1:9/0"\nlock_password_env = "REDIS_PW"\n'
    )
    secrets = {"A_TOKEN": "a-secret-value", "REDIS_PW": "redis-secret", "PLAIN": "plain-value"}
    assert rj.run("a", env=secrets).code == 2
    assert rj.run("b", env=secrets).code == 0
    notifier, child, other = (json.loads(p.read_text()) for p in (notifier_env, child_env, other_env))
    assert child["A_TOKEN"] == "a-secret-value" and "REDIS_PW" not in child and child["PLAIN"] == "plain-value"
    assert "A_TOKEN" not in other and "REDIS_PW" not in other and other["PLAIN"] == "plain-value"
    assert "A_TOKEN" not in notifier and "REDIS_PW" not in notifier and notifier["PLAIN"] == "plain-value"


def test_owners_commands_inherit_no_descriptor_but_0_to_2(rj):
    fds = rj.dir / "fds"
    listing = f"import os; seen = ' '.join(sorted(os.listdir('/proc/self/fd'))); open({str(fds)!r}, 'w').write(seen)"
    rj.write(
        f"[owners.ops]\ncommand = {py(listing)}\n"
        f'[jobs.j]\ncommand = {py("import sys; sys.exit(1)")}\nowners = {{ responsible = "ops" }}\n'
    )
    r, w = os.pipe()
    try:
        proc = rj.popen("j", pass_fds=(r, w))
        assert finish(proc).code == 1
    finally:
        os.close(r)
        os.close(w)
    assert set(fds.read_text().split()) <= {"0", "1", "2", "3"}  # 3: the directory being listed


@pytest.mark.redis
def test_the_child_is_stopped_before_its_redis_key_can_expire(redis_server, rj):
    """Redis stops answering (SIGSTOP): the child must get SIGTERM while the key still exists."""
    stopped = rj.dir / "got-sigterm"
    # On SIGTERM the child marks it and goes on until released: runjob keeps the lock meanwhile.
    child = f"import signal\nsignal.signal(signal.SIGTERM, lambda *a: open({str(stopped)!r}, 'w').close())\n" + HOLD
    rj.write(
        f"[defaults]\nstate_dir = {q(str(rj.state))}\nlock_backend = {q(redis_server.url)}\n"
        f"[jobs.s]\ncommand = {py(child, str(rj.dir / 'started'), str(rj.dir / 'release'))}\n"
        'lock_ttl = "25s"\nkill_grace = "10s"\n'
    )
    proc = rj.popen("s")
    assert wait_for(lambda: (rj.dir / "started").exists())
    redis_server.proc.send_signal(signal.SIGSTOP)
    try:
        assert wait_for(stopped.exists, timeout=60)
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    assert redis_server.client().pttl("runjob:lock:s") > 0  # the key had not expired yet
    (rj.dir / "release").write_text("go")
    r = finish(proc, timeout=60)
    assert r.one("lock.lost")["level"] == "error" and r.one("run.end")["status"] == "killed"


@pytest.mark.redis
def test_children_never_get_the_redis_password(tmp_path_factory, rj):
    from conftest import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis"), password="redis-pw-123")
    dump = rj.dir / "env.json"
    try:
        rj.write(
            f"[defaults]\nstate_dir = {q(str(rj.state))}\nlock_backend = {q(server.url)}\n"
            f'lock_password_env = "REDIS_PW"\n[jobs.s]\ncommand = {py(env_dump(dump))}\n'
        )
        r = rj.run("s", env={"REDIS_PW": "redis-pw-123"})
    finally:
        server.stop()
    assert r.code == 0 and r.one("run.end")["status"] == "success", r.err
    assert "REDIS_PW" not in json.loads(dump.read_text()) and PY
