#!/usr/bin/env python3
"""runjob benchmarks: every figure is a ratio against a baseline measured in the same run.

    .venv/bin/python bench/run.py            # all of it (a few minutes)
    .venv/bin/python bench/run.py --quick    # fewer rounds, smaller output
    .venv/bin/python bench/run.py --only startup

The baseline for start-up is the seed's wrapper as it really runs,
`../shared/anchors/run_job.sh NAME true` (bash, flock, timeout, a UUID, three `date`,
mktemp, bc, tail, sed, tr, rm), found beside the checkout or given with --anchor.
Output throughput is compared with the same generator piped through `cat`.

Run it with the venv's python of a NON-editable install (`pip install .`): it times the
`runjob` installed beside it, never a pyenv shim (which adds ~100 ms to every start), and
an editable install recompiles the tree on hosts with PYTHONDONTWRITEBYTECODE set.
Machines here are shared and noisy, so each timing is the median of interleaved rounds
and only ratios are compared with the targets. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC
from pathlib import Path

BIN = Path(sys.executable).parent
RUNJOB = str(BIN / "runjob")
ROOT = Path(__file__).resolve().parent.parent
LINE = 76  # bytes per output line, newline included
BLOCK_LINES = 13797  # ~1 MiB of 76-byte lines per block

PRINTER = f"""import sys
block = b"".join(b"%075d\\n" % i for i in range({BLOCK_LINES}))
out = sys.stdout.buffer
for _ in range(int(sys.argv[1])):
    out.write(block)
"""

Case = tuple[list[str], dict[str, str], Path, bool]


def timed(case: Case) -> float:
    argv, env, cwd, shell = case
    start = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, shell=shell)
    return time.perf_counter() - start


def interleaved(cases: dict[str, Case], rounds: int) -> dict[str, list[float]]:
    """Seconds of each case per round, the cases run in turn so load hits them alike."""
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, case in cases.items():
            samples[name].append(timed(case))
    return samples


def ratios(samples: dict[str, list[float]], name: str, base: str) -> list[float]:
    """The ratio of `name` to `base` round by round (pairs measured next to each other)."""
    return [a / b for a, b in zip(samples[name], samples[base], strict=True)]


def med(values: list[float]) -> float:
    return statistics.median(values)


def row(what: str, value: str, target: str, ok: bool | None) -> None:
    mark = {True: "ok", False: "MISSED", None: ""}[ok]
    print(f"| {what:<52} | {value:>24} | {target:<14} | {mark:<6} |")


def check(argv: list[str], env: dict[str, str], cwd: Path, expect: int = 0) -> None:
    """Refuse to time a command that fails: a timed config error proves nothing."""
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True)
    if proc.returncode != expect:
        sys.exit(f"bench: {' '.join(argv)} exited {proc.returncode}: {proc.stderr.decode()[-500:]}")


def startup(work: Path, env: dict[str, str], rounds: int, anchor: str) -> None:
    (work / "jobs.toml").write_text('[defaults]\nstate_dir = "state"\n[jobs.t]\ncommand = ["true"]\n')
    check([RUNJOB, "t"], env, work)  # warm: bytecode, history store, registry cache
    samples = interleaved(
        {
            "runjob": ([RUNJOB, "t"], env, work, False),
            "anchor": ([anchor, "t", "true"], env, work, False),
            "python": ([sys.executable, "-c", "pass"], env, work, False),
        },
        rounds,
    )
    r = ratios(samples, "runjob", "anchor")
    worst = sorted(r)[int(len(r) * 0.9)]
    row("runjob NAME (true) / anchor run_job.sh, median", f"{med(r):.2f}x", "<= 1.1x", med(r) <= 1.1)
    row("runjob NAME (true) / anchor, 90th percentile", f"{worst:.2f}x", "<= 1.5x", worst <= 1.5)
    print(
        f"|   runjob {med(samples['runjob']) * 1000:.1f} ms, anchor {med(samples['anchor']) * 1000:.1f} ms, "
        f"bare python {med(samples['python']) * 1000:.1f} ms ({med(ratios(samples, 'python', 'anchor')):.2f}x)"
    )


def everyday(work: Path, env: dict[str, str], rounds: int, anchor: str) -> None:
    (work / "jobs.toml").write_text(registry())
    fill_history(work, env, 2_000)
    cases: dict[str, Case] = {
        "anchor": ([anchor, "t", "true"], env, work, False),
        "--version": ([RUNJOB, "--version"], env, work, False),
        "list --json": ([RUNJOB, "list", "--json"], env, work, False),
        "status --json": ([RUNJOB, "status", "--json"], env, work, False),
    }
    for name in ("list --json", "status --json"):
        check(cases[name][0], env, work)
    samples = interleaved(cases, rounds)
    for name in ("--version", "list --json", "status --json"):
        r = med(ratios(samples, name, "anchor"))
        row(f"{name} (40 jobs, 2,000 rows) / anchor", f"{r:.2f}x", "<= 2x", r <= 2)


def fill_history(work: Path, env: dict[str, str], count: int, param_jobs: int = 0) -> None:
    """`count` rows as runs write them: in the order they started (ids grow with time), over
    80 days, with this host, a pid and its start time, the lock key, a stderr tail for
    failures, and for the first `param_jobs` jobs one of 5 param sets each. Inserted through
    the store's own schema (created by a real run first), so its triggers keep run_latest."""
    import json

    check([RUNJOB, "job0"], env, work)  # a run writes the journal;
    check([RUNJOB, "history", "--limit", "1"], env, work)  # a reader creates the store with its schema
    db = sqlite3.connect(work / "state" / "history.sqlite3")
    columns = [c[1] for c in db.execute("PRAGMA table_info(runs)")]
    host, now = os.uname().nodename, time.time()
    rows = []
    for i, started in enumerate(sorted(now - random.random() * 80 * 86400 for _ in range(count))):
        job = i % 40
        status = random.choice(["success"] * 8 + ["failure", "skipped"])
        params = {"platform": f"p{i // 40 % 5}"} if job < param_jobs else {}
        values = {
            "run_id": f"bench-{i}",
            "job": f"job{job}",
            "params": json.dumps(params),
            "correlation_id": f"bench-{i}",
            "host": host,
            "pid": 1000 + i % 30000,
            "pid_start": 100000 + i,
            "lock_key": f"job{job}" + (f".{params['platform']}" if params else ""),
            "started": started,
            "ended": started + 3,
            "status": status,
            "exit_code": {"success": 0, "skipped": 0}.get(status, 1),
            "attempts": 1,
            "duration_s": 3.0,
            "stderr_tail": "" if status != "failure" else "Traceback (most recent call last):\n  ...\nError: boom\n",
            "max_rss_kb": 20000 + i % 5000,
        }
        rows.append(tuple(values.get(c) for c in columns))
    marks = ",".join("?" * len(columns))
    db.executemany(f"INSERT INTO runs ({','.join(columns)}) VALUES ({marks})", rows)
    db.commit()
    db.close()


def registry(param_jobs: int = 0) -> str:
    """40 scheduled jobs with max_age; the first `param_jobs` take a `platform` param."""
    jobs = ""
    for i in range(40):
        jobs += f'[jobs.job{i}]\ncommand = ["true"]\nschedule = "*/5 * * * *"\nmax_age = "1h"\n'
        if i < param_jobs:
            jobs += f'lock_key = "job{i}.{{platform}}"\n[jobs.job{i}.params.platform]\ndefault = "p0"\n'
    return '[defaults]\nstate_dir = "state"\n' + jobs


def output(work: Path, env: dict[str, str], mib_list: list[int], rounds: int) -> None:
    (work / "printer.py").write_text(PRINTER)
    (work / "jobs.toml").write_text(
        '[defaults]\nstate_dir = "state"\n'
        f'[jobs.json]\ncommand = ["{sys.executable}", "printer.py", "{{n}}"]\n'
        '[jobs.json.params.n]\npattern = "[0-9]+"\n'
        f'[jobs.pass]\ncommand = ["{sys.executable}", "printer.py", "{{n}}"]\noutput = "passthrough"\n'
        '[jobs.pass.params.n]\npattern = "[0-9]+"\n'
    )
    big = mib_list[-1]
    gen = f"{sys.executable} printer.py {big}"
    check([RUNJOB, "json", "n=1"], env, work)
    samples = interleaved(
        {
            "cat": ([f"{gen} | cat > /dev/null"], env, work, True),
            "json pipe": ([f"{RUNJOB} json n={big} | cat > /dev/null"], env, work, True),
            "json null": ([RUNJOB, "json", f"n={big}"], env, work, False),
            "pass pipe": ([f"{RUNJOB} pass n={big} | cat > /dev/null"], env, work, True),
        },
        rounds,
    )
    lines = big * BLOCK_LINES
    for name, target in (("json pipe", 0.2), ("json null", 0.35), ("pass pipe", 0.8)):
        r = med(ratios(samples, "cat", name))
        where = "through a pipe" if "pipe" in name else "to /dev/null"
        mode = "json" if name.startswith("json") else "passthrough"
        row(f"{lines / 1e6:.1f}M lines, {mode} {where} / gen | cat", f"{r:.3f}x", f">= {target}x", r >= target)
    mb = big * 1.048576
    print(
        f"|   gen | cat {mb / med(samples['cat']):.0f} MB/s, json through a pipe "
        f"{lines / med(samples['json pipe']) / 1e6:.2f} M lines/s, to /dev/null "
        f"{lines / med(samples['json null']) / 1e6:.2f} M lines/s"
    )
    record_bytes(work, env)
    rss = {n: peak_rss_kb([RUNJOB, "json", f"n={n}"], env, work) for n in mib_list}
    flat = max(rss.values()) / min(rss.values())
    peak = max(rss.values()) / 1024
    row("peak RSS of runjob, json mode", f"{peak:.1f} MB", "<= 40 MB", peak <= 40)
    row(f"RSS growth {mib_list[0]} MiB -> {big} MiB of output", f"{flat:.2f}x", "flat (< 1.1x)", flat < 1.1)


def record_bytes(work: Path, env: dict[str, str]) -> None:
    """How many bytes runjob writes per byte the child printed (one 1 MiB block)."""
    out = subprocess.run([RUNJOB, "json", "n=1"], env=env, cwd=work, capture_output=True).stdout
    per_line = len(out) / BLOCK_LINES
    print(f"|   a {LINE}-byte line becomes a {per_line:.0f}-byte record ({per_line / LINE:.1f}x the bytes)")
    kept = max((work / "state" / "runs" / "json").glob("*.jsonl"), key=lambda p: p.stat().st_mtime_ns)
    print(f"|   the run's kept copy in state_dir/runs: {kept.stat().st_size / BLOCK_LINES:.0f} bytes a line")


def peak_rss_kb(argv: list[str], env: dict[str, str], cwd: Path) -> int:
    """runjob's peak RSS, from a fresh parent so only runjob (and its child) count."""
    code = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    return int(subprocess.check_output([sys.executable, "-c", code, *argv], env=env, cwd=cwd))


def big_history(work: Path, env: dict[str, str], rounds: int, anchor: str) -> None:
    # 8 of the 40 jobs take a param and have run with 5 param sets each: status shows 72 rows
    (work / "jobs.toml").write_text(registry(param_jobs=8))
    fill_history(work, env, 100_000, param_jobs=8)
    for name in ("status", "history"):
        check([RUNJOB, name, "--json"], env, work)  # warm: the registry cache, next due times
    samples = interleaved(
        {
            "anchor": ([anchor, "t", "true"], env, work, False),
            "--version": ([RUNJOB, "--version"], env, work, False),
            "status": ([RUNJOB, "status", "--json"], env, work, False),
            "history": ([RUNJOB, "history", "--json"], env, work, False),
            "history filtered": (
                [RUNJOB, "history", "job3", "--status", "failure", "--since", "7d", "--json"],
                env,
                work,
                False,
            ),
        },
        rounds,
    )
    for name in ("status", "history", "history filtered"):
        r = med(ratios(samples, name, "--version"))
        row(f"{name} --json (100k rows) / runjob --version", f"{r:.2f}x", "<= 2x", r <= 2)
    print(
        "|   the same / anchor: "
        + ", ".join(
            f"{name} {med(ratios(samples, name, 'anchor')):.2f}x"
            for name in ("--version", "status", "history", "history filtered")
        )
    )


def tick(work: Path, env: dict[str, str], rounds: int, anchor: str) -> None:
    # 160 scheduled jobs at minutes 0, 3, ... 45 of 03:00: at 03:00 the 10 with minute 0 are due.
    jobs = "".join(f'[jobs.j{i}]\ncommand = ["true"]\nschedule = "{i % 16 * 3} 3 * * *"\n' for i in range(160))
    (work / "jobs.toml").write_text('[defaults]\nstate_dir = "state"\n' + jobs)
    started = subprocess.run(
        [RUNJOB, "tick", "--at", "2026-11-09T03:00:00Z"], env=env, cwd=work, capture_output=True, text=True
    )
    if started.returncode != 0 or started.stdout.count('"j') < 10:
        sys.exit(f"bench: tick did not start the 10 due jobs: {started.stdout[-500:]} {started.stderr[-500:]}")
    # Each replayed minute is a new one (a tick starts nothing twice), each next to an anchor run.
    cases: dict[str, Case] = {}
    for r in range(rounds):
        cases[f"anchor{r}"] = ([anchor, "t", "true"], env, work, False)
        cases[f"tick{r}"] = ([RUNJOB, "tick", "--at", f"2026-11-{10 + r:02d}T03:00:00Z"], env, work, False)
    samples = interleaved(cases, 1)
    r = med([samples[f"tick{i}"][0] / samples[f"anchor{i}"][0] for i in range(rounds)])
    took = med([samples[f"tick{i}"][0] for i in range(rounds)])
    row("tick, 160 jobs, 10 due / anchor", f"{r:.2f}x ({took * 1000:.0f} ms)", "<= 5x", r <= 5)
    import tick_bench

    tick_bench.section(RUNJOB, work / "big", env, max(10, rounds), row)


def fleet_claims(work: Path, env: dict[str, str], rounds: int) -> None:
    """Occurrence claims per second against a local redis-server, beside file-lock takes."""
    from datetime import datetime, timedelta

    import queue_bench as qb

    started = qb.redis_url(work)  # the queue section's local redis-server, on a free port
    if started is None:
        print("|   claims: no redis-server here (apt-get install redis-server)")
        return
    url, server = started
    try:
        os.environ["RUNJOB_STATE_DIR"] = str(work / "state")
        (work / "jobs.toml").write_text(
            f'[jobs.j]\ncommand = ["true"]\nschedule = "* * * * *"\nlock_backend = "{url}"\n'
        )
        from runjob.locks import lock  # the very functions tick and a run call
        from runjob.registry import loader
        from runjob.schedule import claims
        from runjob.schedule import scheduled as schedule

        (entry,) = schedule.entries(loader.load(str(work / "jobs.toml")))
        start = datetime(2027, 1, 1, tzinfo=UTC)
        for _ in range(100):  # the server is up once a claim goes through
            try:
                claims.claim(entry, start - timedelta(days=1), {"host": "bench"})
                break
            except claims.Unavailable:
                time.sleep(0.05)
        count = 2000 * rounds // 5
        began = time.perf_counter()
        for i in range(count):
            claims.claim(entry, start + timedelta(minutes=i), {"host": "bench", "run_id": str(i)})
        claimed = count / (time.perf_counter() - began)
        from runjob import safefs

        safefs.ensure_dir(str(work / "state"), top=True)
        safefs.ensure_dir(str(work / "state" / "locks"))
        path = str(work / "state" / "locks" / "bench.lock")
        began = time.perf_counter()
        for _ in range(count):
            held = lock.try_acquire(path)
            assert held is not None
            held.release()
        locked = count / (time.perf_counter() - began)
        row("fleet: occurrence claims per second (local Redis)", f"{claimed:,.0f}/s", "", None)
        print(f"|   file lock take + release: {locked:,.0f}/s ({locked / claimed:.0f}x the claims)")
    finally:
        os.environ.pop("RUNJOB_STATE_DIR", None)
        server.kill()
        server.wait()


def queue(work: Path, env: dict[str, str], rounds: int, anchor: str, quick: bool) -> None:
    """Enqueue cost, dispatch latency, and runs/s with 1, 4, 8 workers vs one process per run."""
    import queue_bench as qb

    count = 100 if quick else 300
    path = qb.registry(work, "")
    check([RUNJOB, "--config", path, "enqueue", "t", "n=1"], env, work)
    samples = interleaved(
        {
            "enqueue": ([RUNJOB, "--config", path, "enqueue", "t", "n=1"], env, work, False),
            "anchor": ([anchor, "t", "true"], env, work, False),
        },
        rounds,
    )
    r = med(ratios(samples, "enqueue", "anchor"))
    row("runjob enqueue / anchor", f"{r:.2f}x ({med(samples['enqueue']) * 1000:.0f} ms)", "<= 2x", r <= 2)
    base = qb.one_by_one(RUNJOB, path, env, count // 3)
    row("one `runjob t` process per run, one by one", f"{base:.1f} runs/s", "", None)
    server = qb.redis_url(work)
    backends = [("sqlite", "")] + ([("redis", f'queue_backend = "{server[0]}"')] if server else [])
    try:
        for name, line in backends:
            sub = work / name
            sub.mkdir()
            path = qb.registry(sub, line)
            lat = qb.latency(RUNJOB, path, env, sub, 5 if quick else 15)
            row(f"{name}: enqueue to child start, idle worker", f"{lat * 1000:.0f} ms", "<= 100 ms", lat <= 0.1)
            for conc in (1, 4, 8):
                qb.report_drain(qb.drain(RUNJOB, path, env, count, conc), name, conc, count, base, row)
            rate = qb.drain_many(RUNJOB, path, env, count, 8)
            row(
                f"{name}: 8 worker processes, {count} runs of true", f"{rate:.1f} runs/s ({rate / base:.1f}x)", "", None
            )
            for size, put_ms, take_ms in qb.flat(path, [100, 10_000] if quick else [100, 100_000]):
                row(
                    f"{name}: {size:,} pending: enqueue / claim+finish",
                    f"{put_ms:.2f} / {take_ms:.2f} ms",
                    "flat",
                    None,
                )
    finally:
        if server:
            server[1].terminate()
            server[1].wait()


def find_anchor(given: str | None) -> str:
    path = Path(given) if given else ROOT.parent / "shared" / "anchors" / "run_job.sh"
    if not os.access(path, os.X_OK):
        sys.exit(f"bench: no anchor at {path}: give --anchor PATH to the seed's run_job.sh")
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds, 27 MiB of output instead of 109")
    parser.add_argument(
        "--only", choices=["startup", "everyday", "output", "history", "tick", "claims", "queue"], help="one section"
    )
    parser.add_argument("--anchor", help="the seed's run_job.sh (default: ../shared/anchors/run_job.sh)")
    args = parser.parse_args()
    if not os.access(RUNJOB, os.X_OK):
        sys.exit(f"no runjob beside {sys.executable}: run this with the venv's python")
    anchor = find_anchor(args.anchor)
    rounds = 5 if args.quick else 15
    sizes = [3, 27] if args.quick else [27, 109]  # 109 MiB: 1.5M lines of 76 bytes
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNJOB_")}
    print(
        f"runjob {subprocess.check_output([RUNJOB, '--version'], text=True).split()[1]}, "
        f"python {sys.version.split()[0]}, {os.cpu_count()} cores\n"
    )
    print(f"| {'what':<52} | {'measured':>24} | {'target':<14} | {'':<6} |")
    print(f"|{'-' * 54}|{'-' * 26}|{'-' * 16}|{'-' * 8}|")
    steps = {
        "startup": lambda w: startup(w, env, rounds * 4, anchor),
        "everyday": lambda w: everyday(w, env, rounds * 2, anchor),
        "output": lambda w: output(w, env, sizes, max(3, rounds // 3)),
        "history": lambda w: big_history(w, env, rounds, anchor),
        "tick": lambda w: tick(w, env, rounds, anchor),
        "claims": lambda w: fleet_claims(w, env, rounds),
        "queue": lambda w: queue(w, env, rounds, anchor, args.quick),
    }
    for name, step in steps.items():
        if args.only and name != args.only:
            continue
        work = Path(tempfile.mkdtemp(prefix="runjob-bench-"))
        try:
            step(work)
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
