"""Exports read by each target's own parser: Debian's `crontab`, `systemd-analyze`, robfig/cron
(the Kubernetes API server's schedule parser) and kubernetes-validate.

Each exported line round-trips: the target's next fire times equal `runjob show`'s, and the
argv the target's executor passes equals what `runjob NAME k=v` gets. A missing tool skips
locally and fails under CI=true (.ci/run installs them).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from conftest import PY, RUNJOB, py, q
from cronsim import CronSim
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runjob.export import dialects
from runjob.registry import budget, validate
from runjob.triggers import cron

ROBFIG_SRC = "/usr/share/gocode/src/github.com/robfig/cron"
ARGV = "import json, sys; print('ARGV ' + json.dumps(sys.argv[1:]))"
START = datetime(2027, 1, 1, tzinfo=UTC)


def need(tool: str, path: str | None = None) -> None:
    """Skip without `tool` locally; under CI the tool is installed by .ci/run, so its absence fails."""
    if os.path.exists(path) if path else shutil.which(tool) is not None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{tool} is missing: .ci/run installs it")
    pytest.skip(f"{tool} is not installed")


# --- the targets' own parsers, and their executors' rules -------------------------------------------

ROBFIG_MAIN = """package main

import (
\t"fmt"
\t"os"
\t"strconv"
\t"time"

\tcron "github.com/robfig/cron/v3"
)

// usage: robfigcheck START N ZONE EXPR: the next N fire times after START (RFC3339), or REJECTED.
func main() {
\tstart, _ := time.Parse(time.RFC3339, os.Args[1])
\tn, _ := strconv.Atoi(os.Args[2])
\tloc, err := time.LoadLocation(os.Args[3])
\tif err != nil {
\t\tfmt.Println("bad zone:", err)
\t\tos.Exit(2)
\t}
\ts, err := cron.ParseStandard(os.Args[4])
\tif err != nil {
\t\tfmt.Println("REJECTED:", err)
\t\tos.Exit(1)
\t}
\tt := start.In(loc)
\tfor i := 0; i < n; i++ {
\t\tt = s.Next(t)
\t\tfmt.Println(t.Format(time.RFC3339))
\t}
}
"""


@pytest.fixture(scope="session")
def robfig(tmp_path_factory):
    """robfig/cron v3.0.1's ParseStandard (Debian's golang-github-robfig-cron-dev), built offline."""
    need("go")
    need("golang-github-robfig-cron-dev", ROBFIG_SRC)
    d = tmp_path_factory.mktemp("robfig")
    (d / "main.go").write_text(ROBFIG_MAIN)
    (d / "go.mod").write_text(
        f"module robfigcheck\n\ngo 1.19\n\nrequire github.com/robfig/cron/v3 v3.0.1\n\n"
        f"replace github.com/robfig/cron/v3 => {ROBFIG_SRC}\n"
    )
    env = dict(
        os.environ,
        HOME=str(d),
        GOPATH=str(d / "gopath"),
        GOCACHE=str(d / "cache"),
        GOFLAGS="-mod=mod",
        GOPROXY="off",
        GO111MODULE="on",
    )
    built = subprocess.run(
        ["go", "build", "-o", str(d / "robfigcheck"), "."], cwd=d, env=env, capture_output=True, text=True
    )
    assert built.returncode == 0, built.stderr

    def check(expr: str, start: datetime, count: int, zone: str = "UTC") -> list[datetime] | str:
        out = subprocess.run(
            [str(d / "robfigcheck"), start.isoformat(), str(count), zone, expr], capture_output=True, text=True
        )
        if out.returncode:
            return out.stdout.strip()
        return [datetime.fromisoformat(t) for t in out.stdout.split()]

    return check


def systemd_times(calendar: str, after: datetime, count: int) -> list[datetime]:
    """`systemd-analyze calendar`'s next elapses after `after` (UTC)."""
    out = subprocess.run(
        ["systemd-analyze", "calendar", f"--iterations={count}", f"--base-time=@{int(after.timestamp())}", calendar],
        capture_output=True,
        text=True,
        env={"TZ": "UTC", "PATH": os.environ["PATH"]},
    )
    assert out.returncode == 0, out.stderr
    times = []
    for line in out.stdout.splitlines():
        key, _, value = line.strip().partition(": ")
        if key == "Next elapse" or key.startswith("Iter. #"):
            times.append(datetime.strptime(value.rsplit(" ", 1)[0][4:], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC))
    return times


def cron_command(line: str) -> str:
    r"""What Debian's cron (3.0pl1 do_command.c) hands to `sh -c` for one job line: `\\` -> `\`,
    `\%` -> `%`, any other `\x` kept, and the first bare `%` ends the command (the rest is stdin).
    These are the rules the cases' tools/cronrun.py states, checked there against the real daemon."""
    fields = line.split(None, 1 if line.startswith("@") else 5)
    out, escaped = [], False
    for ch in fields[-1]:
        if escaped:
            escaped = False
            if ch in "%\\":
                out[-1] = ch
                continue
        elif ch == "\\":
            escaped = True
        elif ch == "%":
            break
        out.append(ch)
    return "".join(out)


def kubelet_expand(text: str, env: dict[str, str]) -> str:
    """The kubelet's expansion of a container's command/args (k8s third_party/forked/golang/expansion):
    `$$` -> `$`, `$(NAME)` -> NAME's value when the container defines it, anything else as written."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "$" and i + 1 < len(text):
            if text[i + 1] == "$":
                out.append("$")
                i += 2
                continue
            end = text.find(")", i + 2)
            if text[i + 1] == "(" and end > 0:
                name = text[i + 2 : end]
                out.append(env.get(name, f"$({name})"))
                i = end + 1
                continue
            out.append(text[i : i + 2])
            i += 2
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


def systemd_dump(units: list[Path]) -> dict[str, dict[str, str]]:
    """`systemd-analyze verify` on the units as written (exit 0 required), and each unit's
    Description and Command Line as its debug dump shows them (specifiers resolved)."""
    need("systemd-analyze")
    plain = subprocess.run(["systemd-analyze", "verify", *map(str, units)], capture_output=True, text=True)
    assert plain.returncode == 0, plain.stderr
    ours = [line for line in plain.stderr.splitlines() if any(u.name in line for u in units)]
    assert ours == [], ours
    debug = subprocess.run(
        ["systemd-analyze", "verify", *map(str, units)],
        capture_output=True,
        text=True,
        env=dict(os.environ, SYSTEMD_LOG_LEVEL="debug"),
    )
    dump: dict[str, dict[str, str]] = {}
    unit = None
    for line in debug.stderr.splitlines() + debug.stdout.splitlines():
        m = re.match(r"\t-> Unit (.+):$", line)
        if m:
            unit = m.group(1) if any(u.name == m.group(1) for u in units) else None
            continue
        m = re.match(r"\t\t\t?(Description|Command Line): (.*)$", line)
        if unit and m:
            dump.setdefault(unit, {})[m.group(1)] = m.group(2)
    return dump


def systemd_argv(command_line: str) -> list[str]:
    """The argv of a dumped Command Line (words, double quotes with C escapes), with the
    exec-time `$$` -> `$` applied (every `$` of ours is written `$$`)."""
    words, i, n = [], 0, len(command_line)
    escapes = {"t": "\t", "n": "\n", "r": "\r"}
    while i < n:
        if command_line[i] == " ":
            i += 1
            continue
        word = []
        quoted = command_line[i] == '"'
        i += quoted
        while i < n and (quoted or command_line[i] != " "):
            ch = command_line[i]
            if quoted and ch == '"':
                i += 1
                break
            if ch == "\\" and i + 1 < n:
                ch = escapes.get(command_line[i + 1], command_line[i + 1])
                i += 1
            word.append(ch)
            i += 1
        words.append("".join(word).replace("$$", "$"))
    return words


def show_next(rj, name: str) -> list[datetime]:
    return [
        datetime.fromisoformat(t) for t in json.loads(rj.run("show", name, "--json", env={"TZ": "UTC"}).out)["next"]
    ]


def export_k8s(rj, *args: str) -> dict[str, dict]:
    r = rj.run("export", "kubernetes", *args)
    assert r.code == 0, r.err
    return {d["metadata"]["name"]: d for d in yaml.safe_load_all(r.out) if d["kind"] == "CronJob"}


def crontab_lines(text: str) -> list[str]:
    """The job lines; each calls runjob by absolute path, written here as ` runjob ` for the checks."""
    runjob = " " + shlex.quote(RUNJOB) + " "
    return [
        line.replace(runjob, " runjob ", 1)
        for line in text.splitlines()
        if line and not line.startswith("#") and runjob in line
    ]


# --- 22.1: schedule dialects ------------------------------------------------------------------------

DIALECT_CASES = {
    "sunday-seven": "0 4 * * 7",
    "weekend": "30 1 * * 5-7",
    "step-from": "5/15 * * * *",
    "daily-alias": "@Daily",
    "odd-weekdays": "0 6 * * 1/2",
    "odd-days": "0 0 */2 * *",
    "weekdays-named": "*/20 9-17 * * mon-fri",
    "first-or-monday": "0 0 1 * mon",
    "step-one-dom": "0 0 */1 * 3",
    "all-dom-or-monday": "0 0 1-31 * 1",
    "every-other-weekday": "0 12 * * */2",
    "months-step": "0 0 1 2/3 *",
}


def dialect_registry(rj) -> None:
    rj.write(
        "".join(f'[jobs.{name}]\ncommand = ["true"]\nschedule = {q(expr)}\n' for name, expr in DIALECT_CASES.items())
    )


def test_kubernetes_schedules_are_read_by_robfig_as_runjob_reads_them(rj, robfig):
    dialect_registry(rj)
    docs = export_k8s(rj)
    assert len(docs) == len(DIALECT_CASES)
    for name, expr in DIALECT_CASES.items():
        schedule = docs[f"runjob-{name}"]["spec"]["schedule"]
        expected = show_next(rj, name)
        assert robfig(schedule, expected[0] - timedelta(seconds=1), 5) == expected, (name, schedule)
        # and over a long stretch, against runjob's own evaluator
        it = CronSim(cron.expand(expr), START)
        assert robfig(schedule, START, 200) == [next(it) for _ in range(200)], (name, schedule)
    assert docs["runjob-sunday-seven"]["spec"]["schedule"] == "0 4 * * 0"
    assert docs["runjob-weekend"]["spec"]["schedule"] == "30 1 * * 0,5,6"


def test_crontab_schedules_pass_debian_crontab_and_keep_runjobs_times(rj):
    need("crontab")
    dialect_registry(rj)
    r = rj.run("export", "crontab")
    assert r.code == 0, r.err
    path = rj.dir / "runjob.crontab"
    path.write_text(r.out)
    checked = subprocess.run(["crontab", "-n", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    lines = {line.split(" runjob ")[1]: line.split(" runjob ")[0] for line in crontab_lines(r.out)}
    assert lines["daily-alias"] == "@daily" and lines["step-from"] == "5-59/15 * * * *"
    for name, schedule in lines.items():
        # Debian's cron has no "next times" tool; cronsim implements its matching rules (star flags,
        # 7 as Sunday, DST fix-up) and is runjob's own evaluator, so equal times here mean equal runs.
        expected = show_next(rj, name)
        it = CronSim(dialects.ALIASES.get(schedule, schedule), expected[0] - timedelta(seconds=1))
        assert [next(it) for _ in range(5)] == expected, (name, schedule)


def test_systemd_calendars_fire_when_runjob_does(rj):
    need("systemd-analyze")
    cases = dict(DIALECT_CASES, **{"odd-wednesdays": "0 0 */2 * 3"})
    del cases["first-or-monday"], cases["all-dom-or-monday"], cases["odd-weekdays"], cases["every-other-weekday"]
    rj.write("".join(f'[jobs.{name}]\ncommand = ["true"]\nschedule = {q(expr)}\n' for name, expr in cases.items()))
    out = rj.dir / "units"
    r = rj.run("export", "systemd", "--out", str(out))
    assert r.code == 0, r.err
    for name in cases:
        calendar = (out / f"runjob-{name}.timer").read_text().split("OnCalendar=")[1].split("\n")[0]
        expected = show_next(rj, name)
        assert systemd_times(calendar, expected[0] - timedelta(seconds=1), 5) == expected, (name, calendar)


@pytest.mark.parametrize(
    "target, expr, says",
    [
        ("kubernetes", "0 23 L * *", 'day of month "L" uses the extension L'),
        ("kubernetes", "0 9 * * MON#2", 'day of week "MON#2" uses the extension #'),
        ("kubernetes", "0 0 * * 5L", "extension L"),
        ("kubernetes", "0 0 */2 * 3", "day of month AND day of week match"),
        ("kubernetes", "0 0 1-15 * */2", "day of month AND day of week match"),
        ("crontab", "0 23 L * *", "Debian's cron cannot run"),
        ("crontab", "0 9 * * MON#2", "# (nth weekday)"),
        ("crontab", "0 0 LW * *", "extension L"),
        ("systemd", "0 0 1 * mon", "OR day of week matches (neither field starts with *)"),
        ("systemd", "0 0 LW * *", "extension L"),
        ("systemd", "0 0 L * 1", "extension L"),
    ],
)
def test_what_a_target_reads_differently_is_refused_by_job_name(rj, target, expr, says):
    rj.write(
        f'[jobs.month-end]\ncommand = ["true"]\nschedule = "{expr}"\n[jobs.fine]\ncommand = ["true"]\nschedule = "0 1 * * *"\n'
    )
    r = rj.run("export", target, "--out", str(rj.dir / "out"))
    assert r.code == 78 and "jobs.month-end.schedule:" in r.err and says in r.err, r.err
    assert "Traceback" not in r.err and not (rj.dir / "out").exists()


def test_systemd_translates_a_star_step_beside_a_weekday_as_cron_ands_them(rj):
    need("systemd-analyze")
    rj.write('[jobs.wed-report]\ncommand = ["true"]\nschedule = "0 0 */2 * 3"\n')
    r = rj.run("export", "systemd", "--out", str(rj.dir / "u"))
    assert r.code == 0, r.err
    calendar = (rj.dir / "u" / "runjob-wed-report.timer").read_text().split("OnCalendar=")[1].split("\n")[0]
    got = systemd_times(calendar, datetime(2026, 12, 1, tzinfo=UTC), 5)
    assert [t.date().isoformat() for t in got] == ["2026-12-09", "2026-12-23", "2027-01-13", "2027-01-27", "2027-02-03"]


@pytest.mark.parametrize(
    "expr, calendar",
    [
        ("0 23 L * *", "*-*~01 23:00:00"),
        ("0 0 L 2 *", "*-02~01 00:00:00"),
        ("0 9 * * MON#2", "Mon *-*-08..14 09:00:00"),
        ("0 9 * * 0#5", "Sun *-*-29..31 09:00:00"),
        ("30 7 * * 5L", "Fri *-*~07/1 07:30:00"),
    ],
)
def test_systemd_spells_last_day_and_nth_weekday_exactly(expr, calendar):
    need("systemd-analyze")
    from runjob.export.systemd import on_calendar

    assert on_calendar(expr) == calendar
    it = CronSim(expr, START)
    assert systemd_times(calendar, START, 15) == [next(it) for _ in range(15)]


day = st.sampled_from(["*", "*/2", "*/3", "*/1", "1-15", "1,15", "10/5", "3", "2-31/7", "1-31"])
weekday = st.sampled_from(["*", "7", "5-7", "0-7", "1/2", "*/2", "*/3", "mon-fri", "sun", "0,7", "1-7/3", "0-6", "3,*"])
minute = st.sampled_from(["0", "*/15", "5/15", "0-30/10", "59"])
hour = st.sampled_from(["0", "*/6", "3/4", "9-17", "23"])
month = st.sampled_from(["*", "2/3", "jan-mar", "1,7", "*/5"])


@pytest.mark.usefixtures("robfig")
@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(
    parts=st.tuples(minute, hour, day, month, weekday), base=st.datetimes(datetime(2026, 1, 1), datetime(2030, 12, 31))
)
def test_every_kubernetes_translation_fires_as_runjob_does(robfig, parts, base):
    expr = " ".join(parts)
    try:
        schedule = dialects.kubernetes(expr)
    except dialects.Untranslatable:
        # Refused only when cron ANDs two restricted day fields (robfig would OR them).
        assert dialects.day_and(list(parts)) and parts[2] not in ("*", "*/1", "1-31")
        return
    base = base.replace(tzinfo=UTC)
    it = CronSim(expr, base)
    assert robfig(schedule, base, 12) == [next(it) for _ in range(12)], schedule


@settings(max_examples=80, deadline=None)
@given(
    parts=st.tuples(minute, hour, day, month, weekday), base=st.datetimes(datetime(2026, 1, 1), datetime(2030, 12, 31))
)
def test_every_crontab_translation_means_the_same(parts, base):
    expr = " ".join(parts)
    schedule = dialects.crontab(expr)
    assert not re.search(r"(^|[ ,])\d+/", schedule), schedule  # Debian needs a range before a step
    base = base.replace(tzinfo=UTC)
    a, b = CronSim(expr, base), CronSim(schedule, base)
    assert [next(a) for _ in range(12)] == [next(b) for _ in range(12)], schedule


# --- 22.2: every value escaped for its target ----------------------------------------------------------

VALUES = {
    "daily": "sales-%Y-%m-%d.csv",
    "promo": "code LIKE 'SUMMER50\\%'",
    "unc": "\\\\nas01\\exports",
    "owner": "it's $HOME",
    "dollars": "tier=$$ $(RUNJOB_CONFIG) ${HOME} $",
    "quotes": 'say "hi"; exit 1 `id` \\n %F %% %',
    "tab": "a\tb:c",
}


def escaping_registry(rj, values: dict[str, str], description: str = "Nightly export; 90% of %F") -> None:
    instances = ", ".join(f"{{ name = {q(k)}, arg = {q(v)} }}" for k, v in values.items())
    rj.write(
        f"[jobs.export-report]\ndescription = {q(description)}\ncommand = {py(ARGV, '{arg}')}\n"
        f'schedule = "10 0 * * *"\nlock_key = "export-report.{{name}}"\ninstances = [{instances}]\n'
        '[jobs.export-report.params.name]\npattern = "[a-z]+"\n[jobs.export-report.params.arg]\npattern = "(?s).+"\n'
    )


def direct_argv(rj, name: str, arg: str) -> list[str]:
    r = rj.run("export-report", f"name={name}", f"arg={arg}")
    assert r.code == 0, r.err
    (line,) = [rec["line"] for rec in r.events("run.output")]
    return json.loads(line.removeprefix("ARGV "))


def test_crontab_lines_reach_the_child_as_a_direct_run(rj):
    need("crontab")
    escaping_registry(rj, VALUES)
    r = rj.run("export", "crontab")
    assert r.code == 0, r.err
    (rj.dir / "runjob.crontab").write_text(r.out)
    checked = subprocess.run(["crontab", "-n", str(rj.dir / "runjob.crontab")], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    lines = crontab_lines(r.out)
    assert len(lines) == len(VALUES)
    env = dict(rj.env(), PATH=os.path.dirname(RUNJOB) + ":/usr/bin:/bin")
    for line in lines:
        # what cron runs: `sh -c COMMAND`, with the crontab's PATH and RUNJOB_CONFIG
        ran = subprocess.run(["/bin/sh", "-c", cron_command(line)], capture_output=True, text=True, env=env, cwd=rj.dir)
        assert ran.returncode == 0, (line, ran.stderr)
        name = re.search(r"name=([a-z]+)", line).group(1)
        via_cron = [
            json.loads(rec["line"].removeprefix("ARGV "))
            for rec in map(json.loads, ran.stdout.splitlines())
            if rec["event"] == "run.output"
        ]
        assert via_cron == [direct_argv(rj, name, VALUES[name])] == [[VALUES[name]]], line


def test_systemd_units_resolve_to_the_intended_text_and_argv(rj):
    escaping_registry(rj, VALUES)
    out = rj.dir / "units"
    r = rj.run("export", "systemd", "--out", str(out))
    assert r.code == 0, r.err
    dump = systemd_dump(sorted(out.iterdir()))
    services = {unit: d for unit, d in dump.items() if unit.endswith(".service")}
    assert len(services) == len(VALUES) and all(":" not in unit for unit in dump)
    for unit, d in services.items():
        argv = systemd_argv(d["Command Line"])
        assert argv[:3] == [RUNJOB, "--config", str(rj.config)]
        name, arg = argv[4].removeprefix("name="), argv[5].removeprefix("arg=")
        assert argv[3:] == ["export-report", f"name={name}", f"arg={VALUES[name]}"] and arg == VALUES[name]
        words = f"export-report name={name} arg={VALUES[name]}"
        assert d["Description"] == f"runjob {words}: Nightly export; 90% of %F"
        assert dump[unit.replace(".service", ".timer")]["Description"] == f"Schedule of runjob {words}"


def test_kubernetes_command_reaches_the_pod_as_written(rj):
    kv = pytest.importorskip("kubernetes_validate")
    escaping_registry(rj, VALUES)
    docs = export_k8s(rj)
    assert len(docs) == len(VALUES)
    for doc in docs.values():
        kv.validate(doc, kv.latest_version(), strict=True)
        container = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
        argv = [kubelet_expand(word, env) for word in container["command"]]
        name = argv[2].removeprefix("name=")
        assert argv == ["runjob", "export-report", f"name={name}", f"arg={VALUES[name]}"]


safe_text = st.text(st.sampled_from("a Z0%$\\'\"`;|&(){}*?#~!=:/\t.-_"), min_size=1, max_size=30)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(value=safe_text)
def test_any_value_round_trips_through_crontab_and_kubernetes(rj, value):
    escaping_registry(rj, {"x": value})
    r = rj.run("export", "crontab")
    assert r.code == 0, r.err
    (line,) = crontab_lines(r.out)
    shown = subprocess.run(
        ["/bin/sh", "-c", cron_command(line).replace("runjob ", f"{PY} -c {q(ARGV)} ", 1)],
        capture_output=True,
        text=True,
    )
    assert shown.stdout == "ARGV " + json.dumps(["export-report", "name=x", f"arg={value}"]) + "\n", line
    (doc,) = export_k8s(rj).values()
    command = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert [kubelet_expand(w, {"RUNJOB_CONFIG": "/etc/runjob/jobs.toml"}) for w in command] == [
        "runjob",
        "export-report",
        "name=x",
        f"arg={value}",
    ]


def test_a_newline_in_a_value_is_refused_for_crontab_and_systemd_kept_for_kubernetes(rj):
    msg = "Timesheets are due today.\nPlease submit them before 17:00."
    escaping_registry(rj, {"ops": msg})
    for target in ("crontab", "systemd"):
        r = rj.run("export", target)
        assert r.code == 78 and "jobs.export-report.instances: `arg=...` has a newline" in r.err, r.err
    (doc,) = export_k8s(rj).values()
    assert doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"][-1] == f"arg={msg}"


# --- 22.3 and 22.4: budgets, catch-up, zones, shared locks ---------------------------------------------

BUDGET = """
[jobs.import-orders]
command = ["true"]
schedule = "0 2 * * *"
lock_key = "shop-db"
timeout = "45m"

[jobs.vacuum-db]
command = ["true"]
schedule = "5 2 * * *"
lock_key = "shop-db"
on_busy = "wait"
wait = "30m"
timeout = "20m"
kill_grace = "10s"
retry = { attempts = 3, delay = "1m", backoff = "exponential", max_delay = "90s" }
"""


def test_the_outer_budget_covers_the_wait_every_attempt_and_the_backoff(rj):
    rj.write(BUDGET)
    # wait 1800 + 3 x (1200 + 10) + backoff 60 + 90, + 30 s margin
    longest = 1800 + 3 * 1210 + 60 + 90
    assert budget.run_budget(validate.parse_string(BUDGET).jobs["vacuum-db"]) == longest
    out = rj.dir / "units"
    assert rj.run("export", "systemd", "--out", str(out)).code == 0
    assert f"TimeoutStartSec={longest + 30}\n" in (out / "runjob-vacuum-db.service").read_text()
    assert "TimeoutStartSec=2740\n" in (out / "runjob-import-orders.service").read_text()  # 45m + 10s grace + 30
    docs = export_k8s(rj)
    assert docs["runjob-vacuum-db"]["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"] == longest + 30


def test_kubernetes_export_says_which_cronjobs_share_a_lock_key(rj):
    rj.write(BUDGET)
    r = rj.run("export", "kubernetes")
    assert r.code == 0
    (note,) = r.err.splitlines()
    assert "runjob-import-orders, runjob-vacuum-db" in note and '"shop-db"' in note and "lock_backend" in note
    rj.write(BUDGET.replace('lock_key = "shop-db"\non_busy', 'lock_key = "other"\non_busy'))
    assert rj.run("export", "kubernetes").err == ""


def test_persistent_only_for_jobs_that_catch_up(rj):
    rj.write(
        '[jobs.send-invoices]\ncommand = ["true"]\nschedule = "0 6 * * *"\n'
        '[jobs.refresh-cache]\ncommand = ["true"]\nschedule = "0 * * * *"\ncatch_up = "10m"\n'
    )
    out = rj.dir / "units"
    assert rj.run("export", "systemd", "--out", str(out)).code == 0
    assert "Persistent" not in (out / "runjob-send-invoices.timer").read_text()
    assert "\nPersistent=true\n" in (out / "runjob-refresh-cache.timer").read_text()
    docs = export_k8s(rj)
    assert docs["runjob-refresh-cache"]["spec"]["startingDeadlineSeconds"] == 600
    assert docs["runjob-send-invoices"]["spec"]["startingDeadlineSeconds"] == 120


def test_crontab_warns_that_debian_cron_ignores_cron_tz(rj):
    rj.write(
        '[jobs.sales-report]\ncommand = ["true"]\nschedule = "0 6 * * mon-fri"\ntimezone = "Pacific/Chatham"\n'
        '[jobs.cleanup]\ncommand = ["true"]\nschedule = "45 3 * * *"\n'
    )
    r = rj.run("export", "crontab")
    assert r.code == 0
    assert "Debian's cron ignores CRON_TZ: sales-report run at the host's time" in r.err
    header = [line for line in r.out.splitlines() if line.startswith("#")][:4]
    assert any("Debian's cron ignores CRON_TZ: sales-report" in line for line in header)
    assert "CRON_TZ=Pacific/Chatham" in r.out.splitlines()
    rj.write('[jobs.cleanup]\ncommand = ["true"]\nschedule = "45 3 * * *"\n')
    r = rj.run("export", "crontab")
    assert r.err == "" and "CRON_TZ" not in r.out


# --- 15.3: no job dropped or merged -----------------------------------------------------------------------

COLLIDING = """
[jobs.imp]
command = ["echo", "{s}"]
schedule = "0 * * * *"
instances = [{ s = "acme_eu" }, { s = "acme-eu" }, { s = "acme:eu" }, { s = "Acme-EU" },
             { s = "a-very-long-supplier-name-that-goes-past-the-kubernetes-limit-one" },
             { s = "a-very-long-supplier-name-that-goes-past-the-kubernetes-limit-two" }]
[jobs.imp.params.s]
pattern = "[A-Za-z:_-]+"
"""


def test_names_stay_unique_after_sanitising_and_truncating(rj):
    rj.write(COLLIDING)
    docs = export_k8s(rj)
    assert len(docs) == 6 and all(len(n) <= 52 and re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", n) for n in docs)
    assert "runjob-imp-acme-eu" in docs  # a name that loses nothing keeps its plain form
    out = rj.dir / "units"
    r = rj.run("export", "systemd", "--out", str(out))
    assert r.code == 0, r.err
    assert len(list(out.glob("*.service"))) == 6 and len(list(out.glob("*.timer"))) == 6
    assert all(":" not in p.name for p in out.iterdir())
    again = export_k8s(rj)
    assert list(again) == list(docs)  # stable


def test_names_that_still_meet_are_refused_naming_both(rj):
    rj.write(
        '[jobs.a-b]\ncommand = ["true"]\nschedule = "0 1 * * *"\n'
        '[jobs.a]\ncommand = ["echo", "{x}"]\nschedule = "0 1 * * *"\ninstances = [{ x = "b" }]\n'
        '[jobs.a.params.x]\npattern = "[a-z]"\n'
    )
    for target in ("systemd", "kubernetes"):
        r = rj.run("export", target)
        assert r.code == 78 and "`a x=b`" in r.err and "`a-b`" in r.err, r.err


def test_validate_checks_every_instances_lock_key(rj):
    rj.write(
        '[jobs.remind]\ncommand = ["echo", "{team}"]\nlock_key = "remind.{team}"\n'
        'instances = [{ team = "ops" }, { team = "night shift" }]\n[jobs.remind.params.team]\npattern = ".+"\n'
    )
    r = rj.run("validate")
    assert r.code == 78 and 'jobs.remind.instances[1]: bad lock key "remind.night shift"' in r.err, r.err
    assert "instances[0]" not in r.err


# --- 15.4 (export parts): a pod and a unit that run as documented -------------------------------------

SECRET_JOB = '[jobs.charge]\ncommand = ["true"]\nschedule = "0 5 * * *"\nsecrets = ["PSP_TOKEN"]\n[jobs.plain]\ncommand = ["true"]\nschedule = "0 6 * * *"\n'


def test_kubernetes_pods_mount_the_registry_state_and_secrets(rj):
    kv = pytest.importorskip("kubernetes_validate")
    rj.write(SECRET_JOB)
    out = rj.dir / "k8s"
    r = rj.run("export", "kubernetes", "--namespace", "shop", "--out", str(out))
    assert r.code == 0, r.err
    docs = [yaml.safe_load(p.read_text()) for p in sorted(out.iterdir())]
    for doc in docs:
        kv.validate(doc, kv.latest_version(), strict=True)
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap"]
    assert cm["data"]["jobs.toml"] == rj.config.read_text() and cm["metadata"]["namespace"] == "shop"
    charge = next(d for d in docs if d["metadata"]["name"] == "runjob-charge")["spec"]["jobTemplate"]["spec"][
        "template"
    ]["spec"]
    (container,) = charge["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in charge["volumes"]}
    assert volumes["registry"]["configMap"]["name"] == cm["metadata"]["name"] and "emptyDir" in volumes["state"]
    env = {e["name"]: e for e in container["env"]}
    assert env["RUNJOB_CONFIG"]["value"] == mounts["registry"] + "/jobs.toml"
    assert env["RUNJOB_STATE_DIR"]["value"].startswith(mounts["state"] + "/")  # a dir inside the volume
    assert env["PSP_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "runjob-secrets", "key": "PSP_TOKEN"}
    plain = next(d for d in docs if d["metadata"]["name"] == "runjob-plain")
    assert "PSP_TOKEN" not in str(plain)


def test_systemd_units_read_secrets_from_an_environment_file(rj):
    rj.write(SECRET_JOB)
    out = rj.dir / "units"
    assert rj.run("export", "systemd", "--out", str(out)).code == 0
    assert "\nEnvironmentFile=/etc/runjob/secrets.env\n" in (out / "runjob-charge.service").read_text()
    assert "EnvironmentFile" not in (out / "runjob-plain.service").read_text()
    systemd_dump(sorted(out.iterdir()))  # verify accepts them
