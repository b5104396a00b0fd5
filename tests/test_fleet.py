"""A fleet (several state dirs, one real redis-server) starts each scheduled occurrence once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import HOLD, Env, finish, py, q, wait_for

pytestmark = pytest.mark.redis

SEND = "import os, sys; open(sys.argv[1], 'a').write(os.environ['RUNJOB_RUN_ID'] + chr(10))"


def fleet(tmp_path: Path, url: str, hosts: int = 3, defaults: str = "") -> list[Env]:
    sent = tmp_path / "sent.log"
    out = []
    for i in range(hosts):
        env = Env(tmp_path / f"host{i}")
        env.dir.mkdir()
        env.write(
            f"[defaults]\nstate_dir = {q(str(env.state))}\nlock_backend = {q(url)}\n{defaults}\n"
            f'[jobs.digest]\ncommand = {py(SEND, str(sent))}\nschedule = "0 6 * * *"\n'
        )
        out.append(env)
    return out


def sent(tmp_path: Path) -> list[str]:
    path = tmp_path / "sent.log"
    return path.read_text().splitlines() if path.exists() else []


def tick(env: Env, at: str):
    r = env.run("tick", "--at", at)  # returns once the run it started (holding tick's stdout) has ended
    assert r.code == 0, r.err
    return r


def test_each_occurrence_runs_once_on_the_first_host_to_tick_it(redis_server, tmp_path):
    hosts = fleet(tmp_path, redis_server.url)
    first = tick(hosts[0], "2026-11-23T06:00:00+00:00")
    (started,) = first.one("tick")["started"]
    run_id = first.one("run.end")["run_id"]
    assert started["run_id"] == run_id  # the run took the id its claim names
    for env in hosts[1:]:
        late = tick(env, "2026-11-23T06:00:00+00:00")
        assert late.one("tick")["started"] == [] and not late.events("run.start")
        claimed = late.one("tick.claimed")
        assert claimed["winner_run_id"] == run_id and claimed["winner_host"] == first.one("run.end")["host"]
        assert claimed["job"] == "tick" and claimed["occurrence"] == "2026-11-23T06:00:00.000Z"
    assert sent(tmp_path) == [run_id]
    # The next day is a new occurrence: the first to tick it wins, whichever host that is.
    second = tick(hosts[2], "2026-11-24T06:00:00+00:00")
    assert len(second.events("run.end")) == 1
    assert (
        tick(hosts[0], "2026-11-24T06:00:00+00:00").one("tick.claimed")["winner_run_id"]
        == second.one("run.end")["run_id"]
    )
    assert len(sent(tmp_path)) == 2
    ttl = redis_server.client().ttl("runjob:claim:digest::2026-11-24T06:00Z")
    assert 86400 < ttl <= 86400 + 3600  # outlives the interval to the next 06:00


def test_simultaneous_ticks_of_three_hosts_start_it_once(redis_server, tmp_path):
    hosts = fleet(tmp_path, redis_server.url)
    results = [finish(p) for p in [env.popen("tick", "--at", "2026-11-23T06:00:00+00:00") for env in hosts]]
    assert all(r.code == 0 for r in results), [r.err for r in results]
    assert sum(len(r.one("tick")["started"]) for r in results) == 1
    assert sum(len(r.events("tick.claimed")) for r in results) == 2
    assert len(sent(tmp_path)) == 1


def test_a_manual_run_is_not_an_occurrence_and_status_shows_the_last_claim(redis_server, tmp_path):
    hosts = fleet(tmp_path, redis_server.url, hosts=2)
    run_id = tick(hosts[0], "2026-11-23T06:00:00+00:00").one("run.end")["run_id"]
    manual = hosts[1].run("digest")
    assert manual.code == 0 and manual.events("run.end")  # only the overlap lock limits it
    assert len(sent(tmp_path)) == 2
    (row,) = json.loads(hosts[1].run("status", "--json").out)
    claim = row["last_claim"]
    assert claim["run_id"] == run_id and claim["occurrence"] == "2026-11-23T06:00:00.000Z" and claim["host"]


def test_an_unreachable_redis_leaves_the_decision_to_the_runs_lock(redis_server, tmp_path):
    (env,) = fleet(tmp_path, redis_server.url, hosts=1, defaults='lock_unavailable = "local"')
    redis_server.stop()
    r = tick(env, "2026-11-23T06:00:00+00:00")
    assert r.one("tick.claim_unavailable")["level"] == "warning"
    assert len(r.one("tick")["started"]) == 1 and r.one("run.end")["exit_code"] == 0


@pytest.mark.parametrize("redis_first", ["down", "up"])
def test_a_host_never_overlaps_itself_when_redis_comes_or_goes(redis_server, tmp_path, redis_first):
    (env,) = fleet(tmp_path, redis_server.url, hosts=1, defaults='lock_unavailable = "local"\non_busy = "fail"')
    release, started = tmp_path / "release", tmp_path / "started"
    with open(env.config, "a") as f:
        f.write(f"[jobs.hold]\ncommand = {py(HOLD, str(started), str(release))}\n")
    if redis_first == "down":
        redis_server.stop()
    first = env.popen("hold")
    assert wait_for(lambda: started.exists(), timeout=30)
    if redis_first == "down":
        redis_server.start()  # Redis is back: the second run gets the Redis key, but not this host's lock
    else:
        redis_server.stop()  # Redis is gone: the second run falls back to this host's lock, which is held
    second = env.run("hold")
    assert second.code == 75 and second.one("lock.busy"), second.out + second.err
    release.write_text("go")
    assert finish(first).code == 0
