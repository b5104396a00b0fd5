"""Fixtures: a registry in a temp dir, and the installed `runjob` run as a subprocess."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, settings

T = TypeVar("T")

# Property tests judge what a function returns, never how fast: on a loaded machine one
# example may wait for a core far past Hypothesis' 200 ms deadline, and generating data may
# be "too slow". Every test's own @settings starts from this profile.
settings.register_profile("runjob", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("runjob")

PY = sys.executable  # the venv's interpreter, not a pyenv shim: children start fast
RUNJOB = shutil.which("runjob", path=os.path.dirname(sys.executable)) or shutil.which("runjob")
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
# How long one runjob (or one awaited record) may take before the test calls it hung. Only a
# failing test ever waits this out; a passing one on a two-core host at load 40-80 (other
# suites in parallel) has taken over a minute for a worker draining a queue.
GUARD = 180.0
COMMON = ("timestamp", "level", "event", "message", "job", "run_id", "correlation_id", "host", "pid")


def q(text: str) -> str:
    """A TOML basic string holding `text` (JSON string escapes are valid TOML)."""
    return json.dumps(text)


def py(code: str, *args: str) -> str:
    """A TOML argv running `code` with the test interpreter (braces in `code` are literal)."""
    code = code.replace("{", "{{").replace("}", "}}")
    return "[" + ", ".join(q(a) for a in [PY, "-c", code, *args]) + "]"


class Result:
    def __init__(self, proc: subprocess.CompletedProcess[bytes]) -> None:
        self.code = proc.returncode
        self.out = proc.stdout.decode("utf-8", "replace")
        self.err = proc.stderr.decode("utf-8", "replace")

    @property
    def records(self) -> list[dict]:
        return [
            json.loads(line) for line in self.out.split("\n") if line.strip()
        ]  # not splitlines: U+0085, U+2028 are not line ends in JSON lines

    def events(self, name: str) -> list[dict]:
        return [r for r in self.records if r["event"] == name]

    def one(self, name: str) -> dict:
        found = self.events(name)
        assert len(found) == 1, f"expected one {name} record, got {len(found)}:\n{self.out}\n{self.err}"
        return found[0]


class Env:
    """A temp dir with a jobs.toml and a state dir, and ways to run runjob on it."""

    def __init__(self, path: Path) -> None:
        self.dir = path
        self.config = path / "jobs.toml"
        self.state = path / "state"

    def write(self, text: str) -> Path:
        if "[defaults]" not in text:
            text = f"[defaults]\nstate_dir = {q(str(self.state))}\n\n" + text
        self.config.write_text(text)
        return self.config

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNJOB_")}
        env["RUNJOB_CONFIG"] = str(self.config)
        return env | (extra or {})

    def run(self, *args: str, timeout: float = GUARD, env: dict[str, str] | None = None) -> Result:
        proc = subprocess.run(
            [RUNJOB, *args],
            capture_output=True,
            timeout=timeout,
            env=self.env(env),
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
        )
        return Result(proc)

    def popen(self, *args: str, env: dict[str, str] | None = None, **kw) -> subprocess.Popen[bytes]:
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        return subprocess.Popen([RUNJOB, *args], env=self.env(env), cwd=self.dir, stdin=subprocess.DEVNULL, **kw)

    def live(self, *args: str, env: dict[str, str] | None = None) -> Live:
        return Live(self.popen(*args, env=env))

    def imported(self, *args: str, env: dict[str, str] | None = None) -> tuple[set[str], str]:
        """(the modules the installed runjob imports for `args`, its stdout), from
        python -X importtime: which modules load does not depend on timing."""
        proc = subprocess.run(
            [PY, "-X", "importtime", RUNJOB, *args],
            capture_output=True,
            env=self.env(env),
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr.decode()[-2000:]
        lines = [line for line in proc.stderr.decode().splitlines() if line.startswith("import time:")]
        return {line.split("|")[-1].strip() for line in lines}, proc.stdout.decode()


@pytest.fixture
def rj(tmp_path: Path) -> Env:
    assert RUNJOB, "the runjob entry point is not installed (pip install -e '.[test]')"
    return Env(tmp_path)


def alive(pid: int) -> bool:
    """Is `pid` a live process (a zombie waiting for a reaper counts as dead)?"""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.02) -> bool:
    """Poll until `predicate()` holds. `timeout` only bounds a failing test, so it is generous."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


# A child that marks it started, then holds on until the test creates the release file.
# The 600 s cap only keeps a failed test from leaving it behind; no test waits for it (a
# shorter one ended a holder before a race of fifty launches on a loaded host was over).
HOLD = (
    "import os, sys, time\nopen(sys.argv[1], 'a').write('x')\nend = time.time() + 600\n"
    "while not os.path.exists(sys.argv[2]) and time.time() < end: time.sleep(0.02)\n"
)
# The same, marking it started by writing its pid (whole: written aside, then renamed).
HOLD_PID = (
    "import os, sys, time\nopen(sys.argv[1] + '.tmp', 'w').write(str(os.getpid()))\n"
    "os.rename(sys.argv[1] + '.tmp', sys.argv[1])\nend = time.time() + 600\n"
    "while not os.path.exists(sys.argv[2]) and time.time() < end: time.sleep(0.02)\n"
)


def finish(proc: subprocess.Popen[bytes], timeout: float = GUARD) -> Result:
    out, err = proc.communicate(timeout=timeout)
    return Result(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))


def race(procs: list[subprocess.Popen[bytes]], release: Path, timeout: float = 120) -> list[Result]:
    """Launches racing for one lock whose winner's child holds on (HOLD) until `release`
    exists: every other launch must finish while the winner still holds the lock, then the
    winner is released. Who overlaps whom is decided by the lock, never by a timing guess."""
    assert wait_for(lambda: sum(p.poll() is not None for p in procs) == len(procs) - 1, timeout=timeout), (
        f"{sum(p.poll() is None for p in procs)} of {len(procs)} launches still running"
    )
    release.write_text("go")
    return [finish(p) for p in procs]


def ready_within_timeout(ready: Path, attempt: Callable[[str], T]) -> T:
    """`attempt(timeout)` with the shortest of a few job timeouts its child gets ready in.

    A test about what a timeout does (kill the group, honour kill_grace ...) needs the
    child to have set itself up (written `ready`) before the timeout fires. The assertions
    are on the outcome, never on elapsed time: a machine too loaded for the child to get
    ready within a short timeout gets the same test again with a longer one."""
    for timeout in ("1s", "10s", "60s"):
        ready.unlink(missing_ok=True)
        outcome = attempt(timeout)
        if ready.exists():
            return outcome
    pytest.fail(f"the child never wrote {ready} before its timeout")


class Live:
    """A runjob in the background whose records a test can wait for while it runs."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        import threading

        self.proc = proc
        self.out, self.err = bytearray(), bytearray()
        self.pumps = [
            threading.Thread(target=_pump, args=(pipe, buf), daemon=True)
            for pipe, buf in ((proc.stdout, self.out), (proc.stderr, self.err))
        ]
        for pump in self.pumps:
            pump.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send_signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def running(self) -> bool:
        return self.proc.poll() is None

    def events(self, name: str) -> list[dict]:
        lines = bytes(self.out).split(b"\n")[:-1]  # only whole lines: the last may be half written
        return [r for r in map(json.loads, lines) if r["event"] == name]

    def wait_event(self, name: str, count: int = 1, timeout: float = GUARD) -> dict:
        """The `count`th `name` record, once runjob has written it."""
        assert wait_for(lambda: len(self.events(name)) >= count or self.proc.poll() is not None, timeout=timeout)
        found = self.events(name)
        assert len(found) >= count, (
            f"runjob ended without {count} {name} record(s):\n{self.out.decode()}{self.err.decode()}"
        )
        return found[count - 1]

    def finish(self, timeout: float = GUARD) -> Result:
        self.proc.wait(timeout=timeout)
        for pump in self.pumps:
            pump.join(timeout)
        done = subprocess.CompletedProcess(self.proc.args, self.proc.returncode, bytes(self.out), bytes(self.err))
        return Result(done)


def _pump(pipe, buf: bytearray) -> None:
    for chunk in iter(lambda: pipe.read1(65536), b""):
        buf.extend(chunk)
    pipe.close()


class Opens:
    """Counts opens of one file through inotify: how a test sees another process try a lock
    (a waiting runjob opens the lock file on every try) without guessing when it did."""

    IN_OPEN = 0x20

    def __init__(self, path: Path) -> None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        assert self.fd >= 0 and libc.inotify_add_watch(self.fd, os.fsencode(path), self.IN_OPEN) >= 0, (
            ctypes.get_errno()
        )
        self.count = 0

    def seen(self) -> int:
        import struct

        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return self.count
        at = 0
        while at < len(data):  # struct inotify_event: wd, mask, cookie, len, then len bytes of name
            _wd, mask, _cookie, size = struct.unpack_from("iIII", data, at)
            self.count += bool(mask & self.IN_OPEN)
            at += 16 + size
        return self.count

    def close(self) -> None:
        os.close(self.fd)


class HttpRecorder:
    """A real HTTP server on 127.0.0.1 that records requests and answers `status` after `delay`."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests: list[tuple[str, str, bytes]] = []
        self.status = 200
        self.delay = 0.0
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                recorder.requests.append((self.command, self.path, body))
                time.sleep(recorder.delay)
                self.send_response(recorder.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_GET = do_POST = _handle

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def http():
    server = HttpRecorder()
    yield server
    server.close()


class RedisServer:
    """A real redis-server on a free loopback port, no persistence, that tests can stop and restart."""

    def __init__(self, workdir: Path, password: str | None = None) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.workdir = workdir
        self.password = password
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        args = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
        ]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        client = redis.Redis(port=self.port, password=self.password)
        assert wait_for(lambda: _pings(client)), "redis-server did not start"

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def client(self):
        import redis

        return redis.Redis(port=self.port, password=self.password)


def _pings(client) -> bool:
    import redis

    try:
        return bool(client.ping())
    except redis.exceptions.RedisError:
        return False


@pytest.fixture
def redis_server(tmp_path_factory):
    if not shutil.which("redis-server"):
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed (.ci/run installs it with apt-get)")
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()
