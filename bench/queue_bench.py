"""The `queue` section of bench/run.py: enqueue cost, dispatch latency, runs per second.

Runs per second: M entries of a job running `true` (a lock key per entry, so no run is
skipped as busy) drained by one `runjob worker --burst --concurrency C`, C = 1, 4, 8, on
SQLite and on Redis (when redis-server is installed), against the same M runs started one
by one as `runjob t n=I` processes.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import time
from pathlib import Path

JOBS = (
    '[jobs.t]\ncommand = ["true"]\nlock_key = "t-{n}"\nparams = { n = { pattern = "[0-9]+" } }\n'
    '[jobs.stamp]\ncommand = ["sh", "-c", "date +%s.%N > \\"$0\\"", "{f}"]\nparams = { f = { pattern = ".+" } }\n'
)


def registry(work: Path, backend: str) -> str:
    path = work / "jobs.toml"
    path.write_text(f'[defaults]\nstate_dir = "state"\n{backend}\n' + JOBS)
    return str(path)


def store_of(path: str):  # type: ignore[no-untyped-def]
    from runjob.queue.backends import open_store
    from runjob.registry import loader

    return open_store(loader.load(path))


def redis_url(work: Path) -> tuple[str, subprocess.Popen[bytes]] | None:
    if not shutil.which("redis-server"):
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(work),
        ],
        stdout=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(port=port)
    for _ in range(500):
        try:
            client.ping()
            break
        except redis.RedisError:
            time.sleep(0.01)
    return f"redis://127.0.0.1:{port}/0", proc


def drain(runjob: str, path: str, env: dict[str, str], count: int, concurrency: int) -> tuple[float, int]:
    """Runs per second of one worker draining `count` entries; and the worker's peak RSS (kB)."""
    store = store_of(path)
    for n in range(count):
        store.put("t", {"n": str(n)}, 0, 0.0)
    store.close()
    start = time.perf_counter()
    proc = subprocess.Popen(
        [runjob, "--config", path, "worker", "--burst", "--concurrency", str(concurrency)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, rusage = os.wait4(proc.pid, 0)[1:]
    took = time.perf_counter() - start
    proc.returncode = 0
    return count / took, rusage.ru_maxrss


def one_by_one(runjob: str, path: str, env: dict[str, str], count: int) -> float:
    start = time.perf_counter()
    for n in range(count):
        subprocess.run([runjob, "--config", path, "t", f"n={n}"], env=env, stdout=subprocess.DEVNULL, check=True)
    return count / (time.perf_counter() - start)


def latency(runjob: str, path: str, env: dict[str, str], work: Path, rounds: int) -> float:
    """Median seconds from an entry's commit to its child's start, with an idle worker waiting."""
    proc = subprocess.Popen([runjob, "--config", path, "worker"], env=env, stdout=subprocess.DEVNULL)
    store = store_of(path)
    seen = []
    try:
        for r in range(rounds):
            stamp = work / f"stamp{r}"
            time.sleep(0.2)  # the worker idles between entries, as it would in real use
            put = time.time()
            store.put("stamp", {"f": str(stamp)}, 0, 0.0)
            while not stamp.exists() or not stamp.read_text().strip():
                time.sleep(0.002)
            seen.append(float(stamp.read_text()) - put)
    finally:
        proc.terminate()
        proc.wait()
        store.close()
    return statistics.median(seen)


def flat(path: str, sizes: list[int]) -> list[tuple[int, float, float]]:
    """(pending, enqueue ms, claim + finish ms) at each queue depth."""
    store = store_of(path)
    out, have = [], 0
    for size in sizes:
        for n in range(have, size):
            store.put("t", {"n": str(n)}, n % 3, 0.0)
        have = size
        start = time.perf_counter()
        for _ in range(200):
            store.put("t", {"n": "0"}, 0, 0.0)
        put_ms = (time.perf_counter() - start) / 200 * 1000
        start = time.perf_counter()
        for _ in range(200):
            entry = store.claim("bench", 60.0)
            store.finish(entry["id"], "bench")
        out.append((size, put_ms, (time.perf_counter() - start) / 200 * 1000))
    store.close()
    return out
