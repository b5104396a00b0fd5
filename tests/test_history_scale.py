"""The history store at scale: `run_latest` (each job instance's newest run and newest
success, kept by triggers), the migration that builds it on an existing store, and the
queries `status` and `stale` make, checked by their query plans (no timing)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time

from conftest import HOLD, Env, finish, py, wait_for
from hypothesis import given, settings
from hypothesis import strategies as st

from runjob.store import history, history_schema

V3 = 3  # the schema version before run_latest


def old_store(path, rows: list[dict]) -> None:
    """A store as runjob 3 left it: the first three migrations, and `rows` as its runs wrote them."""
    path.parent.mkdir(exist_ok=True, mode=0o700)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    for script in history_schema.MIGRATIONS[:V3]:
        for statement in history_schema.statements(script):
            db.execute(statement)
    db.execute(f"PRAGMA user_version = {V3}")
    for row in rows:
        db.execute(f"INSERT INTO runs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", tuple(row.values()))
    db.close()
    os.chmod(path, 0o600)


def run_row(i: int, job: str, status: str, started: float, params: dict[str, str] | None = None) -> dict:
    return {
        "run_id": f"run-{i}",
        "job": job,
        "params": json.dumps(params or {}, separators=(",", ":")),
        "host": os.uname().nodename,
        "pid": 1,
        "pid_start": 1,
        "lock_key": job,
        "started": started,
        "ended": None if status == "running" else started + 1,
        "status": status,
        "exit_code": None if status == "running" else {"success": 0, "skipped": 0}.get(status, 1),
        "attempts": 1,
        "duration_s": 1.0,
        "stderr_tail": "",
    }


def expected_latest(db: sqlite3.Connection) -> dict[tuple[str, str], tuple[str | None, str | None]]:
    """What run_latest must say, worked out from every row the slow way."""
    out = {}
    for job, params in db.execute("SELECT DISTINCT job, params FROM runs"):
        newest = [
            db.execute(
                f"SELECT run_id FROM runs WHERE job = ? AND params = ? AND {where} ORDER BY started DESC, id DESC",
                (job, params),
            ).fetchone()
            for where in ("status != 'skipped'", "status = 'success'")
        ]
        out[(job, params)] = tuple(r[0] if r else None for r in newest)
    return out


def latest(db: sqlite3.Connection) -> dict[tuple[str, str], tuple[str | None, str | None]]:
    rows = db.execute(
        "SELECT l.job, l.params, a.run_id, s.run_id FROM run_latest l "
        "LEFT JOIN runs a ON a.id = l.last_id LEFT JOIN runs s ON s.id = l.success_id"
    )
    return {(job, params): (last, success) for job, params, last, success in rows}


REGISTRY = """
[jobs.plain]
command = ["true"]
max_age = "1h"

[jobs.pull]
command = ["true", "{platform}"]
max_age = "1h"
[jobs.pull.params.platform]
pattern = "[a-z]+"
"""


def test_an_existing_store_is_migrated_once_and_status_reads_the_same(rj: Env):
    now = time.time()
    rows = [
        run_row(0, "plain", "success", now - 500),
        run_row(1, "plain", "failure", now - 400),
        run_row(2, "plain", "skipped", now - 300),  # skipped: never the last run
        run_row(3, "pull", "success", now - 450, {"platform": "acme"}),
        run_row(4, "pull", "failure", now - 350, {"platform": "acme"}),
        run_row(5, "pull", "success", now - 250, {"platform": "bolt"}),
        run_row(6, "pull", "skipped", now - 200, {"platform": "cargo"}),  # a param set seen only skipped
    ]
    old_store(rj.state / "history.sqlite3", rows)
    rj.write(REGISTRY)
    # Several first readers at once: each waits for the one that migrates, none migrates twice.
    procs = [rj.popen("status", "--json") for _ in range(4)]
    results = [finish(p) for p in procs]
    assert all(r.code == 0 for r in results), [r.err for r in results]
    assert len({r.out for r in results}) == 1
    status = {(s["job"], json.dumps(s["params"], separators=(",", ":"))): s for s in json.loads(results[0].out)}
    assert set(status) == {("plain", "{}"), ("pull", '{"platform":"acme"}'), ("pull", '{"platform":"bolt"}')} | {
        ("pull", '{"platform":"cargo"}')
    }
    assert status[("plain", "{}")]["status"] == "failure"
    assert status[("pull", '{"platform":"acme"}')]["status"] == "failure"
    assert status[("pull", '{"platform":"acme"}')]["last_success_at"] is not None
    assert status[("pull", '{"platform":"bolt"}')]["status"] == "success"
    cargo = status[("pull", '{"platform":"cargo"}')]
    assert (cargo["status"], cargo["last_success_at"], cargo["stale"]) == (None, None, True)
    db = sqlite3.connect(rj.state / "history.sqlite3")
    assert db.execute("PRAGMA user_version").fetchone()[0] == history.SCHEMA_VERSION == len(history_schema.MIGRATIONS)
    assert latest(db) == expected_latest(db)
    assert latest(db)[("plain", "{}")] == ("run-1", "run-0")
    before = db.execute("SELECT * FROM run_latest ORDER BY job, params").fetchall()
    db.close()
    assert rj.run("status", "--json").out == results[0].out  # opening it again changes nothing
    assert rj.run("plain").code == 0 and rj.run("history").code == 0  # the run's rows, folded in
    db = sqlite3.connect(rj.state / "history.sqlite3")
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(history_schema.MIGRATIONS)
    after = db.execute("SELECT * FROM run_latest ORDER BY job, params").fetchall()
    assert len(after) == len(before) and latest(db) == expected_latest(db)
    assert latest(db)[("plain", "{}")][1] != "run-0"  # the new run is the newest success now


def test_run_latest_follows_every_way_a_row_changes(rj: Env):
    """Runs of runjob (start, end, skip) folded in from the journal, an end the store first
    refused, a row inserted by hand, and the purge: after each, run_latest says what the rows say."""
    started, release = rj.dir / "started", rj.dir / "release"
    rj.write(
        '[defaults]\nstate_dir = "state"\nhistory_keep = "1d"\n'
        f'[jobs.hold]\ncommand = {py(HOLD, str(started), str(release))}\nlock_key = "k"\n'
        '[jobs.busy]\ncommand = ["true"]\nlock_key = "k"\n'
        '[jobs.fail]\ncommand = ["false"]\n'
        '[jobs.p]\ncommand = ["true", "{n}"]\n[jobs.p.params.n]\npattern = "[0-9]+"\n'
    )
    path = rj.state / "history.sqlite3"
    assert rj.run("fail").code == 1 and rj.run("p", "n=1").code == 0 and rj.run("p", "n=2").code == 0
    proc = rj.popen("hold")
    assert wait_for(started.exists)
    assert rj.run("history").code == 0  # folds the journal
    db = sqlite3.connect(path, isolation_level=None)
    assert latest(db) == expected_latest(db)  # `hold` is running: its row is the newest, no success yet
    assert rj.run("busy").code == 0 and rj.run("history").code == 0  # skipped: a pair with no run that counts
    assert latest(db) == expected_latest(db)
    assert latest(db)[("busy", "{}")] == (None, None)
    # The end is refused by the store at first: it stays in the journal for the next reader.
    db.execute("CREATE TRIGGER refuse BEFORE UPDATE ON runs BEGIN SELECT RAISE(ABORT, 'refused'); END")
    release.write_text("go")
    assert finish(proc).code == 0
    assert rj.run("history", "--json").code == 125
    db.execute("DROP TRIGGER refuse")
    assert rj.run("history", "--json").code == 0
    assert latest(db) == expected_latest(db)
    assert latest(db)[("hold", "{}")][1] is not None
    # Rows an operator inserts by hand, older than the newest: the newest stays; a new param set appears.
    text = {json.loads(t)["n"]: t for (t,) in db.execute("SELECT DISTINCT params FROM runs WHERE job = 'p'")}
    old = time.time() - 3 * 86400
    insert = "INSERT INTO runs (run_id, job, params, started, ended, status) VALUES (?, 'p', ?, ?, ?, 'success')"
    db.execute(insert, ("by-hand", text["1"], old, old + 1))
    db.execute(insert, ("gone", '{"n": "9"}', old, old + 1))
    assert latest(db) == expected_latest(db) and ("p", '{"n": "9"}') in latest(db)
    # A success changed by hand into a failure, then the purge (history_keep 1d) on the next run's end.
    db.execute("UPDATE runs SET status = 'failure' WHERE job = 'p' AND params = ?", (text["2"],))
    assert latest(db) == expected_latest(db) and latest(db)[("p", text["2"])][1] is None
    assert rj.run("fail").code == 1 and rj.run("history").code == 0
    assert db.execute("SELECT COUNT(*) FROM runs WHERE run_id IN ('by-hand', 'gone')").fetchone()[0] == 0
    assert latest(db) == expected_latest(db)
    assert ("p", '{"n": "9"}') not in latest(db)  # its only row was purged: no such param set any more
    status = json.loads(rj.run("status", "--json").out)
    assert sorted(s["params"]["n"] for s in status if s["job"] == "p") == ["1", "2"]
    db.close()


def plans(db: sqlite3.Connection, calls) -> list[str]:
    """The query plan of every statement `calls(db)` runs against the store."""
    seen: list[str] = []
    db.set_trace_callback(seen.append)
    calls(db)
    db.set_trace_callback(None)
    out = []
    for sql in seen:
        if sql.lstrip().upper().startswith("SELECT"):
            # the wording of SQLite 3.36+ (older ones say "SEARCH TABLE runs ...")
            out += [f"{sql} -> {row[3].replace(' TABLE ', ' ')}" for row in db.execute("EXPLAIN QUERY PLAN " + sql)]
    return out


def test_status_and_stale_look_up_keys_and_never_scan_the_runs(rj: Env):
    rj.write('[jobs.p]\ncommand = ["true", "{n}"]\nmax_age = "1h"\n[jobs.p.params.n]\npattern = "[0-9]+"\n')
    for n in ("1", "2"):
        assert rj.run("p", f"n={n}").code == 0
    assert rj.run("history").code == 0  # the runs' rows, folded in
    db = sqlite3.connect(rj.state / "history.sqlite3")

    def status_queries(db: sqlite3.Connection) -> None:
        for text in history.param_sets(db, "p"):
            history.last_runs(db, "p", text)
        history.last_runs(db, "p")

    steps = [p.split(" -> ")[1] for p in plans(db, status_queries)]
    searches = [s for s in steps if s.startswith("SEARCH")]
    assert len(searches) >= 10 and not [s for s in steps if s.startswith("SCAN")], steps
    # Every row is found by key: run_latest by (job, params), runs by id. The only sort is
    # of one job's few run_latest rows (its newest param set), never of its runs.
    assert set(searches) <= {
        "SEARCH run_latest USING PRIMARY KEY (job=?)",
        "SEARCH run_latest USING PRIMARY KEY (job=? AND params=?)",
        "SEARCH runs USING INTEGER PRIMARY KEY (rowid=?)",
    }, searches
    # `status` reads every instance at once: run_latest whole (one row per instance), each
    # of its runs by id; never a scan or a sort of the runs.
    steps = [p.split(" -> ")[1].removesuffix(" LEFT-JOIN") for p in plans(db, history.latest_runs)]
    assert steps == ["SCAN l", "SEARCH a USING INTEGER PRIMARY KEY (rowid=?)"] + [
        "SEARCH s USING INTEGER PRIMARY KEY (rowid=?)"
    ], steps
    latest = history.latest_runs(db)
    for text in history.param_sets(db, "p"):
        assert history.newest(latest["p"], text) == history.last_runs(db, "p", text)
    assert history.newest(latest["p"], None) == history.last_runs(db, "p")


def test_a_status_reader_never_blocks_or_breaks_the_runs_writing_beside_it(rj: Env):
    """Runs and `status` at the same time against one store: every run is recorded once and
    run_latest still matches the rows (triggers write in the fold's own transaction)."""
    rj.write('[jobs.t]\ncommand = ["true", "{n}"]\n[jobs.t.params.n]\npattern = "[0-9]+"\n')
    assert rj.run("t", "n=0").code == 0
    runs = [rj.popen("t", f"n={i % 3}", stdout=subprocess.DEVNULL) for i in range(12)]
    readers = [rj.popen("status", "--json") for _ in range(4)]
    assert all(p.wait(timeout=120) == 0 for p in runs)
    assert all(finish(r).code == 0 for r in readers)
    assert rj.run("history").code == 0  # what the last runs wrote after the readers
    db = sqlite3.connect(rj.state / "history.sqlite3")
    assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 13
    assert latest(db) == expected_latest(db) and len(latest(db)) == 3


# --- next due times kept between calls (schedule/due_times.py) ---------------------------------

SCHEDULES = """
[jobs.five]
command = ["true"]
schedule = "*/5 * * * *"
max_age = "1h"

[jobs.berlin]
command = ["true"]
schedule = "30 2 * * *"
timezone = "Europe/Berlin"

[jobs.host]
command = ["true"]
schedule = "0 3 * * 1-5"

[jobs.hourly]
command = ["true"]
schedule = "@hourly"

[jobs.leap]
command = ["true"]
schedule = "0 0 29 2 *"

[jobs.every]
command = ["true"]
schedule = "@every 90s"

[jobs.off]
command = ["true"]
schedule = "*/5 * * * *"
enabled = false
"""


def test_status_and_list_with_kept_due_times_load_no_schedule_code(rj: Env):
    rj.write(SCHEDULES.replace('"@every 90s"', '"@manual"'))
    assert rj.run("five").code == 0  # the store exists
    for args in (["status", "--json"], ["list", "--json"]):
        assert rj.run(*args).code == 0  # the first call works the times out and keeps them
        modules, out = rj.imported(*args)
        assert not modules & {"cronsim", "zoneinfo", "datetime", "json", "re", "enum", "typing"}, args
        assert [row["next_due"] if "next_due" in row else row["next"] for row in json.loads(out)]
    assert os.stat(rj.state / "next-due.cache").st_mode & 0o777 == 0o600


def at(instant: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(instant))


def test_kept_due_times_are_the_ones_worked_out_afresh(rj: Env):
    """`list --at T` reads the kept times (T within a day of when they were kept, many fire
    times later for `*/5`); `show --at T` always works them out. They must agree, in every
    zone, across the kept list's end, and when TZ changes between calls (New York's first
    call must not take Berlin's times for the host's zone)."""
    rj.write(SCHEDULES)
    assert rj.run("five").code == 0
    now = time.time()
    for tz in ("Europe/Berlin", "America/New_York"):
        assert rj.run("list", "--json", env={"TZ": tz}).code == 0  # keeps the times seen from now
        for later in (0, 4 * 3600 + 17, 20 * 3600):  # 20 h: past the 16 kept for */5
            listed = {
                j["name"]: j["next"]
                for j in json.loads(rj.run("list", "--json", "--at", at(now + later), env={"TZ": tz}).out)
            }
            for name, times in listed.items():
                shown = json.loads(rj.run("show", name, "--json", "--at", at(now + later), env={"TZ": tz}).out)
                assert times == shown["next"][:3], (tz, later, name)


def test_a_symlink_where_the_due_times_are_kept_is_never_followed(rj: Env):
    rj.write(SCHEDULES)
    assert rj.run("five").code == 0
    victim = rj.dir / "victim"
    victim.write_text("keep me")
    (rj.state / "next-due.cache").symlink_to(victim)
    for args in (["status", "--json"], ["list", "--json"]):
        r = rj.run(*args)
        assert r.code == 0 and "Traceback" not in r.err, r.err
    assert victim.read_text() == "keep me" and (rj.state / "next-due.cache").is_symlink()


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.builds(
            lambda n, u, pad: f"{pad}{n}{u}",
            st.integers(0, 10**13),
            st.sampled_from(["s", "m", "h", "d", "ms", "", "x", "S"]),
            st.sampled_from(["", "0", " ", "+", "-"]),
        ),
        st.text(alphabet="0123456789smhd.٣ ", max_size=14),
    )
)
def test_the_short_since_form_reads_as_the_duration_parser_does(text):
    from runjob.cli.history import since_seconds
    from runjob.durations import flag
    from runjob.errors import UsageError

    try:
        expected: float | str = flag(text, "--since") or 0.0
    except UsageError as e:
        expected = str(e)
    try:
        got: float | str = since_seconds(text)
    except UsageError as e:
        got = str(e)
    assert got == expected


def test_history_with_the_usual_filters_loads_no_regex_engine(rj: Env):
    rj.write('[jobs.f]\ncommand = ["false"]\n')
    assert rj.run("f").code == 1
    modules, out = rj.imported("history", "f", "--status", "failure", "--since", "7d", "--json")
    assert not modules & {"re", "enum", "json", "datetime", "typing", "cronsim"}
    assert [r["status"] for r in json.loads(out)] == ["failure"]


def test_kept_due_times_in_a_state_dir_others_can_write_are_never_read(rj: Env):
    """A state dir others may write to could hold a planted file: `list` works the times out."""
    import marshal

    from runjob import __version__
    from runjob.schedule import due_times

    rj.write('[jobs.five]\ncommand = ["true"]\nschedule = "*/5 * * * *"\n')
    assert rj.run("five").code == 0
    expected = json.loads(rj.run("list", "--json").out)[0]["next"]
    planted = {
        key: (time.time() - 10, (4102444800.0,) * 16, True)
        for key in marshal.loads((rj.state / due_times.FILENAME).read_bytes())[2]
    }
    (rj.state / due_times.FILENAME).write_bytes(marshal.dumps((due_times.FORMAT, __version__, planted)))
    assert "2100-01-01" in rj.run("list", "--json").out  # the planted times are read from a trusted dir ...
    os.chmod(rj.state, 0o777)
    listed = json.loads(rj.run("list", "--json").out)[0]["next"]
    assert "2100" not in "".join(listed) and listed[0] >= expected[0]  # ... never from one others can write
