"""The queue on a real redis-server (`queue_backend = "redis://..."`): the SQLite scenarios again,
and workers of two "hosts" (separate state dirs) sharing one queue, each entry run once."""

from __future__ import annotations

import pytest
import redis
from conftest import Env, finish, q
from test_queue import (
    enqueue,
    lines,
    scenario_exactly_once,
    scenario_killed_worker,
    scenario_pause_resume_priority,
    scenario_priorities_delays_dead_letter,
    setup,
    state,
)

pytestmark = pytest.mark.redis


@pytest.fixture
def backend(redis_server) -> str:
    redis.Redis(port=redis_server.port).flushall()  # one server for the session: a clean queue per test
    return f"queue_backend = {q(redis_server.url)}"


def test_priorities_delays_dead_letter_retry_drop(rj, backend):
    scenario_priorities_delays_dead_letter(rj, backend)


def test_pause_resume_and_priority_change(rj, backend):
    scenario_pause_resume_priority(rj, backend)


def test_several_workers_run_each_entry_exactly_once(rj, backend):
    scenario_exactly_once(rj, backend, workers=6)


def test_sigkilled_worker_entry_runs_again(rj, backend):
    scenario_killed_worker(rj, backend)


def test_two_hosts_share_one_queue(tmp_path_factory, backend):
    """Two registries with their own state dirs (two hosts) on one Redis queue: each entry once."""
    hosts = [Env(tmp_path_factory.mktemp(f"host{i}")) for i in range(2)]
    marks = [setup(h, backend) for h in hosts]
    ids = [enqueue(hosts[n % 2], "mark", f"n={n}") for n in range(20)]
    assert len({e["id"] for e in state(hosts[0])["entries"]}) == 20
    procs = [h.popen("worker", "--burst", "--concurrency", "2") for h in hosts for _ in range(2)]
    results = [finish(p) for p in procs]
    assert all(r.code == 0 for r in results), [r.err for r in results]
    ran = lines(marks[0]) + lines(marks[1])
    assert sorted(ran, key=int) == [str(n) for n in range(20)]
    assert sorted(r["queue_id"] for res in results for r in res.events("queue.done")) == sorted(ids)
