"""The fast path (--version, and list/status/history off a terminal) against the typer path;
what the everyday commands import; the registry cache's schedule check; the kept WAL."""

from __future__ import annotations

import json
import sqlite3
import subprocess

import pytest
from conftest import PY, RUNJOB, wait_for
from hypothesis import given, settings
from hypothesis import strategies as st

REGISTRY = """
[owners.ops]
command = ["true"]

[jobs.a]
description = "yearly, with a param"
command = ["sh", "-c", "exit $0", "{code}"]
schedule = "0 3 1 1 *"
max_age = "300d"
owners = { responsible = "ops" }
[jobs.a.params.code]
pattern = "[0-9]"
default = "0"

[jobs.b]
command = ["true"]
schedule = "30 4 1 6 *"
timezone = "Europe/Berlin"

[jobs.manual]
command = ["true"]
"""
AT = "2026-11-23T16:05:00+00:00"
# The typer path, as runjob would take it without the fast path.
TYPER = "import sys\nfrom runjob.main import main\nsys.exit(main(sys.argv[1:], fast=False))"


def both(rj, *args: str) -> tuple[subprocess.CompletedProcess[bytes], subprocess.CompletedProcess[bytes]]:
    """(the installed runjob, the typer path) on `args`, stdout a pipe (not a terminal)."""
    run = {"capture_output": True, "env": rj.env(), "cwd": rj.dir, "stdin": subprocess.DEVNULL, "timeout": 60}
    return subprocess.run([RUNJOB, *args], **run), subprocess.run([PY, "-c", TYPER, *args], **run)


@pytest.fixture
def shop(rj):
    rj.write(REGISTRY)
    for words in (["a"], ["a", "code=3"], ["b"], ["a"]):
        assert rj.run(*words).code in (0, 3)
    return rj


def cases(cfg: str) -> list[list[str]]:
    return [
        ["--version"],
        ["--config", cfg, "--version"],
        ["-c", cfg, "--version"],
        ["list"],
        ["list", "--json"],
        ["list", "--at", AT],
        ["list", f"--at={AT}", "--json"],
        ["status"],
        ["status", "--json"],
        ["status", "--at", AT],
        ["status", "--json", f"--at={AT}"],
        ["history"],
        ["history", "--json"],
        ["history", "a"],
        ["history", "--limit", "1"],
        ["history", "--limit=2", "a", "--json"],
        ["history", "--status", "failure"],
        ["history", "--since", "1d", "--status", "success"],
        ["history", "b", "--status=success", "--since=1h"],
        ["-c", cfg, "history", "b"],
        [f"--config={cfg}", "list"],
        ["--config", cfg, "status", "--at", AT],
        # errors: the same line on stderr and the same exit code
        ["history", "nope"],
        ["history", "--status", "bogus"],
        ["history", "--limit", "0"],
        ["history", "--since", "soon"],
        ["list", "--at", "2026"],
        ["status", "--at", "yesterday"],
        ["--config", cfg + ".missing", "list"],
        ["history", ""],
        ["tick", "--at", "noon"],
        # left to typer: the same answer, whoever parses it
        ["history", "--limit", "x"],
        ["list", "--bogus"],
        ["history", "a", "b"],
        ["status", "--at"],
    ]


def test_the_fast_path_prints_the_same_bytes_as_the_typer_path(shop):
    for args in cases(str(shop.config)):
        fast, typer = both(shop, *args)
        assert (fast.returncode, fast.stdout, fast.stderr) == (typer.returncode, typer.stdout, typer.stderr), args
    # and the answers are real ones, not two identical errors
    fast, _ = both(shop, "history", "a", "--status", "failure")
    assert [r["params"] for r in json.loads(fast.stdout)] == [{"code": "3"}]


@pytest.mark.parametrize("args", [["--version"], ["list"], ["status"], ["history"], ["history", "a", "--limit", "3"]])
def test_everyday_commands_off_a_terminal_load_no_typer_and_with_a_warm_cache_no_toml(shop, args):
    assert shop.run("list").code == 0  # a parse with the schedule check: the cache entry says so
    modules, _ = shop.imported(*args)
    assert not modules & {"typer", "click", "rich", "tomllib", "runjob.cli.app", "runjob.registry.validate"}
    if args[0] in ("--version", "history"):  # no schedule to evaluate: no cronsim, and no json, re or enum
        assert not modules & {"cronsim", "json", "re", "enum"}


def test_a_run_s_cache_entry_does_not_spare_list_the_schedule_check(rj):
    """`runjob NAME` parses without checking schedules; `list` must not take its entry as checked."""
    rj.write('[jobs.bad]\ncommand = ["true"]\nschedule = "61 * * * *"\n')
    assert rj.run("bad").code == 0  # the run path does not look at the schedule, and writes the cache
    for args in (["list"], ["status"]):
        r = rj.run(*args)
        assert r.code == 78 and "61 * * * *" in r.err, (args, r.err)
    assert rj.run("history").code == 0  # history needs no schedule: the entry serves it


def test_tick_starts_its_runs_without_subprocess(rj):
    rj.write('[jobs.t]\ncommand = ["true"]\nschedule = "0 3 * * *"\n')
    modules, out = rj.imported("tick", "--at", "2026-11-09T03:00:00Z")
    assert "subprocess" not in modules
    (record,) = [json.loads(line) for line in out.splitlines() if '"event": "tick"' in line]
    assert [s["job"] for s in record["started"]] == ["t"]
    # the detached run happens: its row ends as a success (bounded wait on the record, not on time)
    assert wait_for(lambda: [r["status"] for r in json.loads(rj.run("history", "t").out)] == ["success"])


def test_the_wal_is_cut_back_after_sqlite_checkpoints_it(rj):
    """A reader leaves the WAL in place (no checkpoint on close), and a fold that finds it grown
    past 256 KiB (a writer that never checkpointed) copies it into the store and empties it."""
    rj.write('[jobs.t]\ncommand = ["true"]\n')
    assert rj.run("t").code == 0
    assert rj.run("history").code == 0  # folds the run's rows in: the store's first write
    wal = rj.state / "history.sqlite3-wal"
    assert wal.exists()  # kept between runs
    # Grow the WAL past SQLite's 1,000-page autocheckpoint, from a writer that never checkpoints.
    grow = (
        "import os, sqlite3, sys, time\ndb = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "db.execute('PRAGMA wal_autocheckpoint = 0')\nnow = time.time()\n"
        'for i in range(40):\n    db.execute("INSERT INTO runs (run_id, job, started, status, stderr_tail) '
        "VALUES (?, 'x', ?, 'success', ?)\", (f'grow-{i}', now, 'x' * 150_000))\nos._exit(0)\n"
    )
    subprocess.run([PY, "-c", grow, str(rj.state / "history.sqlite3")], check=True, timeout=60)
    assert wal.stat().st_size > 4 * 1024 * 1024
    for _ in range(2):
        assert rj.run("t").code == 0 and rj.run("history").code == 0
    assert wal.stat().st_size <= 1024 * 1024 + 64 * 1024
    db = sqlite3.connect(rj.state / "history.sqlite3")
    assert db.execute("SELECT count(*) FROM runs WHERE job = 't' AND status = 'success'").fetchone()[0] == 3
    db.close()


def test_tick_on_the_fast_path_starts_what_the_typer_path_starts(rj):
    rj.write(
        '[jobs.t]\ncommand = ["true"]\nschedule = "0 3 * * *"\n[jobs.u]\ncommand = ["true"]\nschedule = "1 3 * * *"\n'
    )
    seen = []
    for proc in both(rj, "tick", "--at", "2026-11-09T03:00:00Z"):
        assert proc.returncode == 0 and proc.stderr == b""
        (record,) = [r for r in map(json.loads, proc.stdout.splitlines()) if r["event"] == "tick"]
        seen.append((record["event"], record["message"], [s["job"] for s in record["started"]]))
    assert seen[0] == seen[1] == ("tick", "tick 2026-11-09 03:00: started 1 job(s)", ["t"])
    assert wait_for(lambda: len(json.loads(rj.run("history", "t", "--status", "success").out)) == 2)


# The click parser behind the typer app, for comparing parses in-process.
def click_params(command: str, words: list[str]) -> dict | None:
    import click
    import typer

    from runjob.cli.app import app

    group = typer.main.get_command(app)
    try:
        ctx = group.commands[command].make_context(command, list(words), resilient_parsing=False)
    except (click.UsageError, click.exceptions.Exit):
        return None
    return ctx.params


WORDS = st.sampled_from(
    [
        "--json",
        "--at",
        "--limit",
        "--status",
        "--since",
        "--",
        "-",
        "a",
        "",
        "3",
        "-1",
        "x=y",
        "--at=",
        "--limit=5",
        "--json=1",
        "--status=failure",
        "2026-01-01T00:00:00Z",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["list", "status", "history", "tick"]), st.lists(WORDS, max_size=6))
def test_what_the_fast_path_parses_click_parses_the_same(command, words):
    from runjob.cli.fastpath import parse

    fast = parse(command, words)
    if fast is None:
        return  # left to typer
    values, positional = fast
    params = click_params(command, words)
    assert params is not None, words
    assert params.get("as_json", False) == bool(values.get("--json"))
    if command == "history":
        assert params["limit"] == int(values.get("--limit", "50"))
        assert (params["status"], params["since"]) == (values.get("--status"), values.get("--since"))
        assert params["name"] == (positional[0] if positional else None)
    else:
        assert params["at"] == values.get("--at")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(JSON_VALUES)
def test_jsonout_writes_what_json_dumps_with_indent_2_writes(value):
    from runjob.records import jsonout

    assert jsonout.dumps(value) == json.dumps(value, indent=2)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=5), st.sampled_from([None, (",", ":")]))
def test_jsonout_reads_params_as_json_loads_does(params, separators):
    from runjob.records import jsonout

    text = json.dumps(params, separators=separators, ensure_ascii=separators is None)
    assert jsonout.loads(text) == json.loads(text) == params


def test_jsonout_leaves_what_it_cannot_read_to_json():
    from runjob.records import jsonout

    for text in ("{} x", '{"a": 1', "nul"):
        with pytest.raises(json.JSONDecodeError):
            jsonout.loads(text)
    assert jsonout.loads(' {"a": [1, 2.5, null]} ') == {"a": [1, 2.5, None]}
