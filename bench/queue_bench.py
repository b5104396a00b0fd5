"""The `queue` section of bench/run.py: enqueue cost, dispatch latency, runs per second.

Runs per second: M entries of a job running `true` (a lock key per entry, so no run is
skipped as busy) drained by one `runjob worker --burst --concurrency C`, C = 1, 4, 8, on
SQLite and on Redis (when redis-server is installed), against the same M runs started one
by one as `runjob t n=I` processes. With them: the CPU each run costs (the worker and all
under it), which bounds runs/s at cores / CPU per run on an idle machine, and the peak RSS
of the worker itself and of its largest forked run, from /proc (VmHWM).
"""

from __future__ import annotations

import shutil
import socket
import statistics
import subprocess
import time
from collections.abc import Callable
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


# Starts the worker from a small, fresh interpreter and prints the largest peak RSS among its
# children. Not os.wait4 from this process: Linux carries a process's peak RSS across fork and
# exec (the exec'ing process records the peak of the memory it leaves), so a worker started
# from this bench, after it loaded runjob and redis, would report the bench's own RSS.
LAUNCHER = (
    "import resource, subprocess, sys; "
    "subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
    "r = resource.getrusage(resource.RUSAGE_CHILDREN); print(r.ru_maxrss, r.ru_utime + r.ru_stime)"
)


class Drained:
    """One worker draining the queue: runs/s, CPU per run, peak RSS of the worker and of its forks."""

    def __init__(self, count: int, took: float, cpu: float, worker_kb: int, fork_kb: int, all_kb: int) -> None:
        self.rate = count / took
        self.cpu_ms = cpu / count * 1000  # worker and every process under it, per run
        self.worker_kb = worker_kb  # VmHWM of the worker process itself
        self.fork_kb = fork_kb  # the largest VmHWM of a forked run (its pages shared with the worker count)
        self.all_kb = all_kb  # ru_maxrss: the largest of the worker and all it waited for


def drain(runjob: str, path: str, env: dict[str, str], count: int, concurrency: int) -> Drained:
    """One `runjob worker --burst` draining `count` entries of `true`."""
    import sys

    store = store_of(path)
    store.put_many([("t", {"n": str(n)}, 0, 0.0) for n in range(count)])
    store.close()
    argv = [runjob, "--config", path, "worker", "--burst", "--concurrency", str(concurrency)]
    start = time.perf_counter()
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, *argv], env=env, stdout=subprocess.PIPE)
    worker_kb, fork_kb = watch(launcher)
    out = launcher.communicate()[0].split()
    took = time.perf_counter() - start
    return Drained(count, took, float(out[1]), worker_kb, fork_kb, int(out[0]))


def drain_many(runjob: str, path: str, env: dict[str, str], count: int, workers: int) -> float:
    """Runs per second of `workers` worker processes (concurrency 1 each) draining `count` entries."""
    store = store_of(path)
    store.put_many([("t", {"n": str(n)}, 0, 0.0) for n in range(count)])
    store.close()
    argv = [runjob, "--config", path, "worker", "--burst"]
    start = time.perf_counter()
    procs = [subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL) for _ in range(workers)]
    for proc in procs:
        proc.wait()
    return count / (time.perf_counter() - start)


def report_drain(got: Drained, name: str, conc: int, count: int, base: float, row: Callable[..., None]) -> None:
    import os

    target = ">= 100/s" if conc == 8 and name == "sqlite" else ""
    row(
        f"{name}: worker, concurrency {conc}, {count} runs of true",
        f"{got.rate:.1f} runs/s ({got.rate / base:.1f}x)",
        target,
        got.rate >= 100 if target else None,
    )
    mb = got.worker_kb / 1024
    row(f"{name}: worker peak RSS (VmHWM), concurrency {conc}", f"{mb:.1f} MB", "<= 50 MB", mb <= 50)
    cores = os.cpu_count() or 1
    print(
        f"|   CPU per run {got.cpu_ms:.1f} ms (at most {cores * 1000 / got.cpu_ms:.0f} runs/s on {cores} idle cores); "
        f"largest forked run {got.fork_kb / 1024:.1f} MB, ru_maxrss of worker and forks {got.all_kb / 1024:.1f} MB"
    )


def watch(launcher: subprocess.Popen[bytes]) -> tuple[int, int]:
    """(peak VmHWM of the worker, of any forked run) sampled from /proc until the launcher exits."""
    worker_kb = fork_kb = 0
    while launcher.poll() is None:
        for pid in children(launcher.pid):
            worker_kb = max(worker_kb, hwm_kb(pid))
            for fork in children(pid):
                fork_kb = max(fork_kb, hwm_kb(fork))
        time.sleep(0.005)
    return worker_kb, fork_kb


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def hwm_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(line.split()[1]) for line in f if line.startswith("VmHWM:")), 0)
    except (OSError, ValueError):
        return 0


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
