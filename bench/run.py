#!/usr/bin/env python3
"""runjob benchmarks: every figure is a ratio against a baseline measured in the same run.

    .venv/bin/python bench/run.py            # all of it (a few minutes)
    .venv/bin/python bench/run.py --quick    # smaller output sizes and fewer rounds

Run it with the venv's python: it times the `runjob` installed beside it (never a
pyenv shim, which adds ~100 ms to every start). Machines here are shared and noisy, so
each timing is the median of interleaved rounds, and only ratios are compared with the
targets. Not part of the test suite.
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
from pathlib import Path

BIN = Path(sys.executable).parent
RUNJOB = str(BIN / "runjob")
LINE = 76  # bytes per output line, newline included

WRAPPER = """#!/bin/bash
# The shell baseline: what runjob replaces for one run.
id=$(cat /proc/sys/kernel/random/uuid)
exec 9>"$LOCK"
flock -n 9 || exit 0
printf '{"event":"run.start","run_id":"%s","job":"%s"}\\n' "$id" "$1"
timeout 10 true
rc=$?
printf '{"event":"run.end","run_id":"%s","exit_code":%d}\\n' "$id" $rc
exit $rc
"""

PRINTER = """import sys
block = b"".join(b"%075d\\n" % i for i in range(13797))  # ~1 MiB of 76-byte lines
out = sys.stdout.buffer
for _ in range(int(sys.argv[1])):
    out.write(block)
"""


def timed(argv: list[str], env: dict[str, str], cwd: Path, stdout=subprocess.DEVNULL, shell: bool = False) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, stdout=stdout, stderr=subprocess.DEVNULL, check=False, shell=shell)
    return time.perf_counter() - start


def interleaved(cases: dict[str, tuple], rounds: int) -> dict[str, float]:
    """Median seconds of each case, the cases run in turn so load hits them alike."""
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, (argv, env, cwd, shell) in cases.items():
            samples[name].append(timed(argv, env, cwd, shell=shell))
    return {name: statistics.median(values) for name, values in samples.items()}


def peak_rss_kb(argv: list[str], env: dict[str, str], cwd: Path) -> int:
    """runjob's peak RSS, from a fresh parent so only runjob (and its child) count."""
    code = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")  # fmt: skip
    return int(subprocess.check_output([sys.executable, "-c", code, *argv], env=env, cwd=cwd))


def row(what: str, value: str, target: str, ok: bool | None) -> None:
    mark = {True: "ok", False: "MISSED", None: ""}[ok]
    print(f"| {what:<46} | {value:>22} | {target:<12} | {mark:<6} |")


def startup(work: Path, env: dict[str, str], rounds: int) -> None:
    (work / "wrap.sh").write_text(WRAPPER)
    (work / "wrap.sh").chmod(0o755)
    (work / "jobs.toml").write_text('[defaults]\nstate_dir = "state"\n[jobs.t]\ncommand = ["true"]\n')
    subprocess.run([RUNJOB, "t"], env=env, cwd=work, stdout=subprocess.DEVNULL)  # warm: bytecode, history file
    shell_env = env | {"LOCK": str(work / "wrap.lock")}
    times = interleaved({
        "runjob": ([RUNJOB, "t"], env, work, False),
        "wrapper": ([str(work / "wrap.sh"), "t"], shell_env, work, False),
        "flock+timeout": (["flock", "-n", str(work / "l"), "timeout", "10", "true"], env, work, False),
        "python": ([sys.executable, "-c", "pass"], env, work, False),
    }, rounds)  # fmt: skip
    ratio = times["runjob"] / times["wrapper"]
    row("start-up: runjob NAME (true) / shell wrapper", f"{ratio:.2f}x", "<= 1.5x", ratio <= 1.5)
    print(f"|   runjob {times['runjob'] * 1000:.1f} ms, wrapper {times['wrapper'] * 1000:.1f} ms, "
          f"flock+timeout {times['flock+timeout'] * 1000:.1f} ms, bare python {times['python'] * 1000:.1f} ms")


def output(work: Path, env: dict[str, str], mib_list: list[int], rounds: int) -> None:
    (work / "printer.py").write_text(PRINTER)
    (work / "jobs.toml").write_text(
        '[defaults]\nstate_dir = "state"\n'
        f'[jobs.json]\ncommand = ["{sys.executable}", "printer.py", "{{n}}"]\n[jobs.json.params.n]\npattern = "[0-9]+"\n'
        f'[jobs.pass]\ncommand = ["{sys.executable}", "printer.py", "{{n}}"]\noutput = "passthrough"\n'
        '[jobs.pass.params.n]\npattern = "[0-9]+"\n'
    )
    big = mib_list[-1]
    printer = f"{sys.executable} printer.py {big}"
    times = interleaved({
        "cat": ([f"{printer} | cat > /dev/null"], env, work, True),
        "json": ([RUNJOB, "json", f"n={big}"], env, work, False),
        "passthrough": ([RUNJOB, "pass", f"n={big}"], env, work, False),
    }, rounds)  # fmt: skip
    mb = big * 1.048576
    json_ratio = times["cat"] / times["json"]
    pass_ratio = times["cat"] / times["passthrough"]
    row(f"output {mb:.0f} MB: json throughput / cat", f"{json_ratio:.3f}x", ">= 0.125x", json_ratio >= 0.125)
    row(f"output {mb:.0f} MB: passthrough throughput / cat", f"{pass_ratio:.3f}x", ">= 0.8x", pass_ratio >= 0.8)
    print(f"|   cat {mb / times['cat']:.0f} MB/s, json {mb / times['json']:.0f} MB/s "
          f"({mb / LINE * 1e6 / times['json'] / 1e6:.2f} M lines/s), passthrough {mb / times['passthrough']:.0f} MB/s")
    rss = {n: peak_rss_kb([RUNJOB, "json", f"n={n}"], env, work) for n in mib_list}
    flat = max(rss.values()) / min(rss.values())
    peak = max(rss.values()) / 1024
    row("peak RSS of runjob, json mode", f"{peak:.1f} MB", "<= 40 MB", peak <= 40)
    row(f"RSS growth {mib_list[0]} MiB -> {big} MiB of output", f"{flat:.2f}x", "flat (<1.1x)", flat < 1.1)


def history_commands(work: Path, env: dict[str, str], rounds: int) -> None:
    jobs = "".join(f'[jobs.job{i}]\ncommand = ["true"]\nschedule = "*/5 * * * *"\nmax_age = "1h"\n' for i in range(40))
    (work / "jobs.toml").write_text('[defaults]\nstate_dir = "state"\n' + jobs)
    subprocess.run([RUNJOB, "job0"], env=env, cwd=work, stdout=subprocess.DEVNULL)  # creates the store
    db = sqlite3.connect(work / "state" / "history.sqlite3")
    now = time.time()
    rows = []
    for i in range(100_000):
        started = now - random.random() * 80 * 86400
        status = random.choice(["success"] * 8 + ["failure", "skipped"])
        rows.append((f"bench-{i}", f"job{i % 40}", "{}", "vm", 1, "k", started, started + 3, status, 0, 1, 3.0, ""))
    db.executemany("INSERT INTO runs (run_id, job, params, host, pid, lock_key, started, ended, status, exit_code, "
                   "attempts, duration_s, stderr_tail) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)  # fmt: skip
    db.commit()
    db.close()
    times = interleaved({
        "version": ([RUNJOB, "--version"], env, work, False),
        "status": ([RUNJOB, "status", "--json"], env, work, False),
        "history": ([RUNJOB, "history", "--json"], env, work, False),
        "history filtered": ([RUNJOB, "history", "job3", "--status", "failure", "--since", "7d", "--json"], env, work, False),
    }, rounds)  # fmt: skip
    for name in ("status", "history", "history filtered"):
        ratio = times[name] / times["version"]
        row(f"{name} (100k rows) / runjob --version", f"{ratio:.2f}x", "<= 2x", ratio <= 2)
    print(f"|   --version {times['version'] * 1000:.0f} ms, status {times['status'] * 1000:.0f} ms, "
          f"history {times['history'] * 1000:.0f} ms")


def tick(work: Path, env: dict[str, str], rounds: int) -> None:
    # 160 scheduled jobs; at 03:00 the 10 with minute 0 are due, the rest are not.
    jobs = "".join(f'[jobs.j{i}]\ncommand = ["true"]\nschedule = "{i % 16 * 4} 3 * * *"\n' for i in range(160))
    (work / "jobs.toml").write_text('[defaults]\nstate_dir = "state"\n' + jobs)
    samples = []
    for r in range(rounds):
        (work / "state" / "tick.json").unlink(missing_ok=True)
        samples.append(timed([RUNJOB, "tick", "--at", f"2026-11-{10 + r:02d}T03:00:00+00:00"], env, work))
    version = statistics.median(timed([RUNJOB, "--version"], env, work) for _ in range(rounds))
    took = statistics.median(samples)
    row("tick with 160 jobs (10 due)", f"{took * 1000:.0f} ms", "< 1 s", took < 1)
    print(f"|   {took / version:.2f}x runjob --version ({version * 1000:.0f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="27 MiB instead of 270, fewer rounds")
    parser.add_argument("--only", choices=["startup", "output", "history", "tick"], help="run one section")
    args = parser.parse_args()
    if not os.access(RUNJOB, os.X_OK):
        sys.exit(f"no runjob beside {sys.executable}: run this with the venv's python")
    rounds = 5 if args.quick else 15
    sizes = [3, 27] if args.quick else [27, 270]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNJOB_") and k != "PYTHONDONTWRITEBYTECODE"}
    print(f"runjob {subprocess.check_output([RUNJOB, '--version'], text=True).split()[1]}, "
          f"python {sys.version.split()[0]}, {os.cpu_count()} cores\n")
    print(f"| {'what':<46} | {'measured':>22} | {'target':<12} | {'':<6} |")
    print(f"|{'-' * 48}|{'-' * 24}|{'-' * 14}|{'-' * 8}|")
    steps = {"startup": lambda w: startup(w, env, rounds * 4), "output": lambda w: output(w, env, sizes, max(3, rounds // 5)),
             "history": lambda w: history_commands(w, env, rounds), "tick": lambda w: tick(w, env, rounds)}  # fmt: skip
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
