"""Redis locks against a real redis-server: many hosts, renewal, lost locks, outages."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import HOLD, Env, finish, py, q, race, wait_for

pytestmark = pytest.mark.redis


def registry(env: Env, url: str, extra: str = "", defaults: str = "") -> Path:
    """Job `s` under a Redis lock; its child marks `started` and holds on until the returned
    release file exists (created up front: the child ends at once)."""
    flag, release = env.dir / "started", env.dir / "release"
    env.write(
        f"[defaults]\nstate_dir = {q(str(env.state))}\nlock_backend = {q(url)}\n{defaults}\n"
        f"[jobs.s]\ncommand = {py(HOLD, str(flag), str(release))}\n{extra}\n"
    )
    return release


def renewals(client, key: str, count: int) -> bool:
    """Wait until the key's TTL has been seen reset `count` times (each renewal raises it)."""
    seen, last = 0, client.pttl(key)
    while seen < count:
        ttl = client.pttl(key)
        if ttl < 0:
            return False  # expired or gone
        seen += ttl > last
        last = ttl
        time.sleep(0.01)  # polling interval, not a wait for something to happen
    return True


def test_two_hosts_twenty_launches_exactly_one_runs(redis_server, tmp_path):
    hosts = [Env(tmp_path / f"host{i}") for i in range(2)]
    release = tmp_path / "release"
    for env in hosts:
        env.dir.mkdir()
        env.write(
            f"[defaults]\nstate_dir = {q(str(env.state))}\nlock_backend = {q(redis_server.url)}\n"
            f"[jobs.s]\ncommand = {py(HOLD, str(tmp_path / 'started'), str(release))}\n"
        )
    results = race([env.popen("s") for _ in range(20) for env in hosts], release)
    assert all(r.code == 0 for r in results), [r.err for r in results if r.code]
    ran = [r for r in results if r.events("run.end")]
    busy = [r for r in results if r.events("lock.busy")]
    assert len(ran) == 1 and len(busy) == 39
    winner = ran[0].one("run.start")["run_id"]
    assert {r.one("lock.busy")["holder_run_id"] for r in busy} <= {winner}
    assert redis_server.client().keys("runjob:lock:*") == []  # released by its owner


def hold(env: Env, url: str, extra: str) -> None:
    """A job that holds its lock until the test creates the release file (the shortest TTL validate allows)."""
    env.write(
        f"[defaults]\nstate_dir = {q(str(env.state))}\nlock_backend = {q(url)}\n"
        f"[jobs.s]\ncommand = {py(HOLD, str(env.dir / 'started'), str(env.dir / 'release'))}\n"
        f'lock_ttl = "16s"\nkill_grace = "1s"\n{extra}\n'
    )


def test_renewal_keeps_a_long_job_locked_past_its_ttl(redis_server, rj):
    hold(rj, redis_server.url, 'on_busy = "fail"')
    first = rj.popen("s")
    assert wait_for(lambda: (rj.dir / "started").exists())

    def pttl() -> int:
        return redis_server.client().pttl("runjob:lock:s")

    lowest = [pttl()]
    assert 0 < lowest[0] <= 16000

    def renewed() -> bool:  # the TTL went back up: only renewal does that
        now = pttl()
        lowest[0] = min(lowest[0], now)
        return now > lowest[0] + 500

    assert wait_for(renewed, timeout=30)
    r = rj.run("s")
    assert r.code == 75 and r.one("lock.busy")["holder_pid"] == first.pid
    (rj.dir / "release").write_text("go")
    assert finish(first).code == 0


def test_lost_lock_kills_the_job_by_default(redis_server, rj):
    hold(rj, redis_server.url, "")
    proc = rj.popen("s")
    assert wait_for(lambda: (rj.dir / "started").exists())
    redis_server.stop()
    r = finish(proc)
    lost = r.one("lock.lost")
    assert lost["level"] == "error" and lost["on_lock_lost"] == "kill"
    end = r.one("run.end")
    assert r.code == 143 and end["status"] == "killed" and "lock lost" in end["error"]
    redis_server.start()  # recovery: the next run takes the lock again
    (rj.dir / "release").write_text("go")
    assert rj.run("s").one("run.end")["status"] == "success"


def test_lost_lock_with_continue_lets_the_job_finish(redis_server, rj):
    hold(rj, redis_server.url, 'on_lock_lost = "continue"')
    proc = rj.popen("s")
    assert wait_for(lambda: (rj.dir / "started").exists())
    redis_server.client().delete("runjob:lock:s")  # as after a restart without persistence
    seen = []
    for line in proc.stdout:  # the child goes on holding until runjob has said the lock is lost
        seen.append(json.loads(line))
        if seen[-1]["event"] == "lock.lost":
            (rj.dir / "release").write_text("go")
            break
    r = finish(proc)
    assert r.code == 0 and r.one("run.end")["status"] == "success"
    assert seen[-1]["event"] == "lock.lost" and seen[-1]["on_lock_lost"] == "continue"


@pytest.mark.parametrize("policy, code, ran", [("fail", 75, False), ("skip", 0, False), ("local", 0, True)])
def test_redis_unreachable_at_start(rj, policy, code, ran):
    registry(rj, "redis://127.0.0.1:9/0", defaults=f'lock_unavailable = "{policy}"').write_text("go")
    r = rj.run("s")
    assert r.code == code
    rec = r.one("lock.unavailable")
    assert rec["lock_unavailable"] == policy and "127.0.0.1:9" in rec["error"]
    assert rec["level"] == ("error" if policy == "fail" else "warning")
    assert bool(r.events("run.end")) == ran and (rj.dir / "started").exists() == ran


def test_password_comes_from_the_environment(tmp_path_factory, rj):
    from conftest import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis"), password="s3cret-pw")
    try:
        registry(rj, server.url, defaults='lock_password_env = "REDIS_PW"').write_text("go")
        assert rj.run("s", env={"REDIS_PW": "s3cret-pw"}).one("run.end")["status"] == "success"
        r = rj.run("s", env={"REDIS_PW": "wrong"})
        assert r.code == 75 and "s3cret-pw" not in r.out + r.err
        r = rj.run("s")
        assert r.code == 75 and "$REDIS_PW" in r.one("lock.unavailable")["error"]
    finally:
        server.stop()
    rj.write('[defaults]\nlock_backend = "redis://:pw@127.0.0.1:6379/0"\n[jobs.s]\ncommand = ["true"]\n')
    r = rj.run("validate")
    assert r.code == 78 and "do not write the password in the URL" in r.err


def test_locks_and_status_show_redis_held_locks(redis_server, rj):
    release = registry(rj, redis_server.url)
    proc = rj.popen("s")
    assert wait_for(lambda: (rj.dir / "started").exists())
    (held,) = json.loads(rj.run("locks", "--json").out)
    status = {s["job"]: s for s in json.loads(rj.run("status", "--json").out)}
    release.write_text("go")
    r = finish(proc)
    shown = redis_server.url.rsplit("/", 1)[0]  # scheme, host and port only
    assert held["lock_key"] == "s" and held["backend"] == shown and held["pid"] == proc.pid
    assert held["run_id"] == r.one("run.start")["run_id"] and held["host"] and held["ttl_s"] > 0
    assert status["s"]["locks"][0]["run_id"] == held["run_id"]


def test_on_busy_wait_with_redis(redis_server, rj):
    release = registry(rj, redis_server.url, extra='on_busy = "wait"\nwait = "1h"')
    first = rj.popen("s")
    assert wait_for(lambda: (rj.dir / "started").exists())
    client = redis_server.client()
    tries = client.info("commandstats")["cmdstat_set"]["calls"]
    second = rj.popen("s")
    # Two more SET NX: the second run has tried and failed at least once, so it is waiting.
    assert wait_for(lambda: client.info("commandstats")["cmdstat_set"]["calls"] >= tries + 2, timeout=30)
    assert second.poll() is None
    (rj.dir / "started").unlink()
    release.write_text("go")
    assert finish(first).code == 0
    r = finish(second)
    assert r.code == 0 and r.one("run.end")["status"] == "success" and not r.events("lock.busy")
    assert (rj.dir / "started").read_text() == "x"  # it ran its own child once it had the lock
