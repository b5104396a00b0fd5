"""The big half of bench/run.py's `tick` section: a registry of 10,000 jobs, 100 of them due,
`dispatch = "queue"`, ticked with a warm registry cache (every tick but the first after an
edit) and with a cold one (the file just changed).

The 9,900 jobs that are not due are spread over about 1,400 distinct daily expressions, so
the figure does not lean on every job sharing one schedule.
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

COUNT = 10_000
HOURS = [h for h in range(24) if h != 3]


def registry(work: Path) -> None:
    """COUNT jobs; at 03:00 UTC exactly the 100 with i % 100 == 0 are due."""
    parts = ['[defaults]\nstate_dir = "state"\ndispatch = "queue"\n']
    for i in range(COUNT):
        expr = "0 3 * * *" if i % 100 == 0 else f"{i % 60} {HOURS[i // 60 % 23]} * * *"
        parts.append(f'[jobs.j{i}]\ncommand = ["true"]\nschedule = "{expr}"\n')
    (work / "jobs.toml").write_text("".join(parts))


def one(runjob: str, work: Path, env: dict[str, str], day: int) -> tuple[float, float, int]:
    """(wall s, CPU s, runs enqueued) of one `tick --at` 03:00 UTC on day `day` of a 2026 month."""
    at = f"2026-{1 + day // 28:02d}-{1 + day % 28:02d}T03:00:00Z"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([runjob, "tick", "--at", at], env=env, cwd=work, capture_output=True, text=True)
    took = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    if proc.returncode != 0:
        raise SystemExit(f"bench: tick failed: {proc.stderr[-500:]}")
    return took, cpu, proc.stdout.count('"event": "queue.enqueued"')


def measure(runjob: str, work: Path, env: dict[str, str], rounds: int) -> dict[str, float]:
    """Median wall and CPU seconds of warm ticks, and of cold ones (the registry edited before each)."""
    registry(work)
    warm: list[tuple[float, float]] = []
    cold: list[tuple[float, float]] = []
    for r in range(rounds):
        if r % 5 == 0:  # an edit (a comment): the next tick parses and validates 10,000 tables again
            with open(work / "jobs.toml", "a") as f:
                f.write(f"# edit {r}\n")
        took, cpu, queued = one(runjob, work, env, r)
        if queued != 100:
            raise SystemExit(f"bench: tick enqueued {queued} runs, not the 100 due")
        (cold if r % 5 == 0 else warm).append((took, cpu))
    return {
        "warm": statistics.median(t for t, _ in warm),
        "warm_cpu": statistics.median(c for _, c in warm),
        "cold": statistics.median(t for t, _ in cold),
        "cold_cpu": statistics.median(c for _, c in cold),
    }


def section(runjob: str, work: Path, env: dict[str, str], rounds: int, row: Callable[..., None]) -> None:
    work.mkdir()
    got = measure(runjob, work, env, rounds)
    row("tick, 10,000 jobs, 100 due, dispatch = queue", f"{got['warm'] * 1000:.0f} ms", "<= 1 s", got["warm"] <= 1)
    print(
        f"|   CPU {got['warm_cpu'] * 1000:.0f} ms; the first tick after an edit (TOML parse and validation of "
        f"10,000 tables): {got['cold'] * 1000:.0f} ms, CPU {got['cold_cpu'] * 1000:.0f} ms"
    )
