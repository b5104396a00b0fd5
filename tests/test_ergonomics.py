"""Operator ergonomics (issue 15): shell jobs, RUNJOB_STATE_DIR, env references, optional
params, per-instance status, help and completion, the portable build."""

from __future__ import annotations

import glob
import json
import os
import shutil
import stat
import subprocess
import sys

import pytest
import yaml
from conftest import PY, RUNJOB, q, wait_for
from hypothesis import given, settings
from hypothesis import strategies as st

from runjob.registry import shellcmd
from runjob.registry.templating import expand_env, substitute

ARGV_JSON = "import sys, json; print(json.dumps(sys.argv[1:]))"


def lines(result) -> list[str]:
    return [r["line"] for r in result.events("run.output")]


# --- 15.2: shell = true -------------------------------------------------------------------


def test_shell_job_runs_pipes_and_keeps_a_param_value_data(rj, tmp_path):
    """A value full of shell syntax reaches the pipeline as one word, wherever its placeholder stands."""
    out = tmp_path / "out.txt"
    rj.write(f"""
[jobs.pipe]
shell = true
command = "printf '%s|' {{who}} \\"in {{who}}\\" 'sq {{who}}' ${{HOME}} {{job}} | tr a-z A-Z > {out}"
[jobs.pipe.params.who]
pattern = ".*"
""")
    evil = "a b;$(touch pwned)`id`'\""
    r = rj.run("pipe", f"who={evil}", env={"HOME": "/home/x"})
    assert r.code == 0, r.out + r.err
    expected = f"{evil}|in {evil}|sq {evil}|/home/x|pipe|".upper()
    assert out.read_text() == expected
    assert not (rj.dir / "pwned").exists()
    start = r.one("run.start")
    assert start["command"][:2] == ["/bin/sh", "-c"] and evil not in start["command"][2]


def test_shell_job_dry_run_shows_the_value_in_the_env_not_the_script(rj):
    rj.write('[jobs.s]\nshell = true\ncommand = "echo {x} | cat"\n[jobs.s.params.x]\npattern = "[a-z]+"\n')
    r = rj.run("run", "s", "x=abc", "--dry-run", "--format", "json")
    assert r.code == 0, r.err
    shown = json.loads(r.out)
    assert shown["argv"] == ["/bin/sh", "-c", 'echo "$RUNJOB_PARAM_x" | cat', "s"]
    assert shown["env"]["RUNJOB_PARAM_x"] == "abc"


@pytest.mark.parametrize(
    "command", ["cat a | sort", "echo hi > f", "sort < f", "true && false", "a; b", "echo $(date)", 'echo "$(date)"']
)
def test_string_command_needing_a_shell_is_a_config_error_naming_shell_true(rj, command):
    rj.write(f"[jobs.c]\ncommand = {q(command)}\n")
    r = rj.run("validate")
    assert r.code == 78
    assert "jobs.c.command" in r.err and "shell = true" in r.err and "Traceback" not in r.err


@pytest.mark.parametrize("command", ["find . -exec rm {} \\;", "grep 'a|b' f", 'echo "x > y"'])
def test_quoted_or_escaped_operators_need_no_shell(rj, command):
    rj.write(f"[jobs.c]\ncommand = {q(command)}\n")
    assert rj.run("validate").code == 0


def test_shell_true_needs_a_string_and_known_placeholders(rj):
    rj.write('[jobs.a]\nshell = true\ncommand = ["echo", "x"]\n[jobs.b]\nshell = true\ncommand = "echo {nope}"\n')
    r = rj.run("validate")
    assert r.code == 78
    assert "jobs.a.command: shell = true needs the command as one string" in r.err
    assert 'jobs.b.command: placeholder "{nope}" has no param' in r.err


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab {}$'\"\\|;x", max_size=20), st.text(max_size=10))
def test_shell_script_template_never_holds_a_param_value(text, value):
    """Whatever the command text, substituting the script template never pastes the value in."""
    script, used = shellcmd.script(text)
    rendered = substitute(script, {n: "\0" + value for n in used} | {"job": "\0"})
    assert "\0" not in rendered


# --- 15.4: RUNJOB_STATE_DIR -----------------------------------------------------------------


def test_runjob_state_dir_wins_over_the_registry_state_dir(rj, tmp_path):
    volume = tmp_path / "volume"
    volume.mkdir()
    volume.chmod(0o1777)  # a pod's emptyDir: world-writable, so runjob must not use it as its state dir
    rj.write('[jobs.t]\ncommand = ["true"]\n')  # state_dir set by rj.write: the host's
    state = volume / "state"
    r = rj.run("t", env={"RUNJOB_STATE_DIR": str(state)})
    assert r.code == 0, r.err
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert (state / "history.journal").exists() and not rj.state.exists()
    h = rj.run("history", "--json", env={"RUNJOB_STATE_DIR": str(state)})
    assert h.code == 0 and '"t"' in h.out


def test_kubernetes_pod_env_runs_against_a_world_writable_volume(rj, tmp_path):
    """The exported pod's RUNJOB_STATE_DIR, under a volume root that is world-writable, works."""
    rj.write('[jobs.t]\ncommand = ["true"]\nschedule = "0 5 * * *"\n')
    out = tmp_path / "k8s"
    assert rj.run("export", "kubernetes", "--out", str(out)).code == 0
    pod = yaml.safe_load((out / "runjob-t.yaml").read_text())["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    mount = next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "state")
    assert env["RUNJOB_STATE_DIR"].startswith(mount + "/")
    volume = tmp_path / "vol"
    volume.mkdir()
    volume.chmod(0o777)
    local = str(volume) + env["RUNJOB_STATE_DIR"][len(mount) :]
    r = rj.run(*container["command"][1:], env={"RUNJOB_STATE_DIR": local})
    assert r.code == 0, r.err
    assert stat.S_IMODE(os.stat(local).st_mode) == 0o700


# --- 15.6: $VAR in env values, optional params ----------------------------------------------


def test_env_values_expand_variables_from_runjobs_environment(rj):
    rj.write(f"""
[jobs.e]
command = ["{PY}", "-c", "import os; print(os.environ['PATH'].split(':')[0], os.environ['Q'], os.environ['S'])"]
env = {{ PATH = "/opt/app/bin:$PATH", Q = "${{BASE}}/x-{{who}}-$$", S = "[$OTHER_TOKEN]" }}
[jobs.e.params.who]
pattern = ".*"
[jobs.other]
command = ["true"]
secrets = ["OTHER_TOKEN"]
""")
    r = rj.run("e", "who=$BASE", env={"BASE": "/srv", "OTHER_TOKEN": "s3cret"})
    assert r.code == 0, r.err
    # a param value is never expanded; another job's secret is not readable through a reference
    assert lines(r) == ["/opt/app/bin /srv/x-$BASE-$ []"]


@given(st.text(alphabet="ab{}$", max_size=8), st.text(alphabet="ab{}$", max_size=8))
def test_expand_env_gives_the_value_literally_and_leaves_no_placeholder(before, value):
    """A looked-up value comes out exactly as it is, braces and dollars included."""
    literal = before.replace("$", "$$").replace("{", "{{").replace("}", "}}")
    expanded = expand_env(literal + "${V}" + literal, lambda name: value if name == "V" else None)
    assert substitute(expanded, {}) == before + value + before


def test_omit_empty_param_drops_its_argv_elements(rj):
    rj.write(f"""
[jobs.o]
command = ["{PY}", "-c", {q(ARGV_JSON)}, "--since={{since}}", "--all"]
[jobs.o.params.since]
pattern = "[0-9-]+"
default = ""
omit_empty = true
""")
    assert rj.run("validate").code == 0
    assert json.loads(lines(rj.run("o"))[0]) == ["--all"]
    assert json.loads(lines(rj.run("o", "since=2026-01-01"))[0]) == ["--since=2026-01-01", "--all"]
    assert rj.run("o", "since=x").code == 2  # a non-empty value still matches its pattern


def test_omit_empty_is_off_by_default(rj):
    rj.write(
        f'[jobs.o]\ncommand = ["{PY}", "-c", {q(ARGV_JSON)}, "--since={{since}}"]\n'
        '[jobs.o.params.since]\npattern = ".*"\ndefault = ""\n'
    )
    assert json.loads(lines(rj.run("o"))[0]) == ["--since="]


# --- 15.5: crontab export --------------------------------------------------------------------


def test_crontab_export_calls_runjob_by_path_and_gives_jobs_the_system_path(rj):
    """Run each exported line as cron does (`sh -c` with only the crontab's variables): runjob
    starts, and the job's PATH has no trace of runjob's own venv, so its python3 is the host's."""
    rj.write(
        '[jobs.which]\ncommand = ["/bin/sh", "-c", "echo $PATH; command -v python3 || echo none"]\n'
        'schedule = "*/5 * * * *"\n'
    )
    r = rj.run("export", "crontab")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert any("MAILTO mails whatever a job prints" in line for line in lines if line.startswith("#"))
    cron_env = dict(
        line.split("=", 1) for line in lines if line and not line.startswith("#") and "=" in line.split()[0]
    )
    (job_line,) = [line for line in lines if line.startswith("*/5 ")]
    venv_bin = os.path.dirname(PY)
    assert venv_bin not in cron_env["PATH"].split(":")
    ran = subprocess.run(
        ["/bin/sh", "-c", job_line.split(None, 5)[5]],
        capture_output=True,
        text=True,
        env=cron_env | {"HOME": str(rj.dir)},
        cwd=rj.dir,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    path, python3 = [json.loads(rec)["line"] for rec in ran.stdout.splitlines() if '"run.output"' in rec]
    assert venv_bin not in path.split(":") and not python3.startswith(venv_bin)


# --- 15.9: the single-file build on any Python 3.11+ ------------------------------------------


def _other_pythons() -> list[str]:
    """Interpreters 3.11+ on this host other than the one building; the test needs at least one."""
    found = {shutil.which(f"python3.{minor}") for minor in range(11, 20)}
    found |= set(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[1-9]*/bin/python3")))
    out = []
    for path in sorted(p for p in found if p):
        version = subprocess.run(
            [path, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True, check=False
        )
        if version.returncode == 0 and version.stdout.strip() != str(tuple(sys.version_info[:2])):
            out.append(path)
    return out


# A pip install, a compileall and imports compiled from source: past the suite's 120 s
# per test on a loaded two-core host. The limit only keeps a hung build from hanging the suite.
@pytest.mark.timeout(900)
def test_single_file_build_runs_on_other_python_versions(tmp_path):
    others = _other_pythons()
    if not others:
        pytest.skip("no second Python 3.11+ on this host")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    checkout = tmp_path / "checkout"
    for tree in ("src", "tools"):
        shutil.copytree(os.path.join(root, tree), checkout / tree, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(os.path.join(root, name), checkout / name)
    build = subprocess.run(
        [str(checkout / "tools" / "build-pyz")],
        capture_output=True,
        text=True,
        env=os.environ | {"PYTHON": PY},
        timeout=600,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    pyz = str(checkout / "dist" / "runjob.pyz")
    (tmp_path / "jobs.toml").write_text('[defaults]\nstate_dir = "st"\n[jobs.hi]\ncommand = ["echo", "hi"]\n')
    clean = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    for python in others:
        run = subprocess.run([python, pyz, "hi"], capture_output=True, text=True, env=clean, cwd=tmp_path, check=False)
        assert run.returncode == 0, (python, run.stderr)
        assert [json.loads(line)["line"] for line in run.stdout.splitlines() if '"run.output"' in line] == ["hi"]


# --- 15.7: per instance -------------------------------------------------------------------------

INSTANCES = f"""
[jobs.imp]
command = ["{PY}", "-c", "import sys; sys.exit(0 if sys.argv[1] == 'acme' else 3)", "{{s}}"]
schedule = "0 * * * *"
lock_key = "imp.{{s}}"
max_age = "1d"
instances = [{{ s = "acme" }}, {{ s = "globex" }}, {{ s = "initech" }}]
[jobs.imp.params.s]
pattern = "[a-z]+"
"""


def test_status_and_stale_are_per_instance(rj):
    rj.write(INSTANCES)
    assert rj.run("imp", "s=acme").code == 0
    assert rj.run("imp", "s=globex").code == 3
    rows = json.loads(rj.run("status", "--json").out)
    by_params = {r["params"]["s"]: r for r in rows if r["job"] == "imp"}
    assert sorted(by_params) == ["acme", "globex", "initech"]
    assert by_params["acme"]["status"] == "success" and by_params["acme"]["stale"] is False
    assert by_params["globex"]["status"] == "failure" and by_params["globex"]["stale"] is True
    assert by_params["initech"]["status"] is None and by_params["initech"]["stale"] is True
    r = rj.run("stale", "--json")
    assert r.code == 1
    stale = sorted(rec["params"]["s"] for rec in r.events("job.stale"))
    assert stale == ["globex", "initech"]  # acme succeeded: its sibling's failure does not hide or taint it


def test_locks_and_status_show_the_child_pid_of_the_holding_instance(rj):
    from conftest import HOLD_PID, wait_for

    started, release = rj.dir / "started", rj.dir / "release"
    rj.write(f"""
[jobs.hold]
command = ["{PY}", "-c", {q(HOLD_PID)}, {q(str(started))}, {q(str(release))}, "{{s}}"]
lock_key = "hold.{{s}}"
instances = [{{ s = "a" }}, {{ s = "b" }}]
[jobs.hold.params.s]
pattern = "[a-z]+"
""")
    live = rj.live("hold", "s=a")
    try:
        assert wait_for(started.exists)
        child = int(started.read_text())
        (held,) = json.loads(rj.run("locks", "--json").out)
        assert held["lock_key"] == "hold.a" and held["pid"] == live.pid and held["child_pid"] == child
        rows = {r["params"]["s"]: r for r in json.loads(rj.run("status", "--json").out)}
        assert [h["child_pid"] for h in rows["a"]["locks"]] == [child] and rows["b"]["locks"] == []
    finally:
        release.write_text("go")
    assert live.finish().code == 0


# --- 15.8: help, completion, pretty output, the child's level ------------------------------------

COMMANDS = [
    "run",
    "list",
    "show",
    "validate",
    "history",
    "status",
    "stale",
    "locks",
    "export",
    "import",
    "tick",
    "init",
    "add",
    "schema",
    "resume",
    "logs",
    "report",
    "serve",
    "enqueue",
    "worker",
    "supervise",
    "queue",
]


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS)], ids=["runjob", *COMMANDS])
def test_help_shows_examples_and_no_escaped_markup(rj, command):
    r = rj.run(*command, "--help")
    assert r.code == 0, r.err
    examples = r.out.split("Examples:", 1)[1].splitlines()
    assert any(line.strip().startswith(("runjob ", "* * * * * runjob", "crontab -l")) for line in examples)
    assert "\\[" not in r.out and "[required]" in r.out if command in (["run"], ["show"]) else "\\[" not in r.out


def test_completion_installs_and_completes_commands_and_job_names(rj, tmp_path):
    rj.write(
        '[jobs.pull-orders]\ncommand = ["true"]\n[jobs.purge]\ncommand = ["true"]\n[jobs.reindex]\ncommand = ["true"]\n'
    )
    home = tmp_path / "home"
    home.mkdir()
    r = rj.run("--install-completion", "bash", env={"HOME": str(home), "SHELL": "/bin/bash"})
    assert r.code == 0, r.err
    script = home / ".bash_completions" / "runjob.sh"
    assert f"source '{script}'" in (home / ".bashrc").read_text() and "_RUNJOB_COMPLETE" in script.read_text()
    words = rj.run(env={"_RUNJOB_COMPLETE": "complete_bash", "COMP_WORDS": "runjob st", "COMP_CWORD": "1"})
    assert words.out.split() == ["status", "stale"]
    names = rj.run(env={"_RUNJOB_COMPLETE": "complete_bash", "COMP_WORDS": "runjob run pu", "COMP_CWORD": "2"})
    assert names.out.split() == ["pull-orders", "purge"]


def on_terminal(rj, *args: str, env: dict[str, str] | None = None) -> str:
    """`runjob ARGS` with its stdout on a pseudo-terminal (as a person sees it), escapes stripped."""
    import pty
    import re

    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [shutil.which("runjob", path=os.path.dirname(PY)) or "runjob", *args],
        stdout=follower,
        stderr=subprocess.DEVNULL,
        env=rj.env({"COLUMNS": "250"} | (env or {})),
        cwd=rj.dir,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the terminal's other end is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=60)
    os.close(leader)
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode())


def test_show_and_dry_run_pretty_have_no_python_reprs_and_one_named_zone(rj):
    rj.write(
        '[jobs.p]\ncommand = ["echo", "a b"]\nschedule = "0 3 * * *"\ntimezone = "Asia/Tokyo"\n'
        'env = { A = "1" }\nretry = { attempts = 2, delay = "90s" }\n[jobs.p.params.x]\ndefault = "v"\n'
    )
    shown = on_terminal(rj, "show", "p", env={"TZ": "Europe/Berlin"})
    dry = rj.run("run", "p", "--dry-run", "--format", "pretty").out
    for text in (shown, dry):
        assert not any(token in text for token in ("{'", "['", "None", "True", "False", "': ")), text
        assert "attempts=2" in text and "delay=1m30s" in text
    assert "echo 'a b'" in shown and "timeout            1h" in shown
    # 03:00 in Tokyo is 19:00 in Berlin the day before: shown in the host zone, which is named
    assert "19:00:00" in shown and "(Europe/Berlin)" in shown and "+09:00" not in shown


def test_status_table_is_in_one_named_local_zone(rj):
    rj.write(
        '[jobs.tokyo]\ncommand = ["true"]\nschedule = "0 3 * * *"\ntimezone = "Asia/Tokyo"\n'
        '[jobs.here]\ncommand = ["true"]\nschedule = "0 3 * * *"\n'
    )
    assert rj.run("here").code == 0
    text = on_terminal(rj, "status", env={"TZ": "America/New_York"})
    assert "last run (America/New_York)" in text and "next due (America/New_York)" in text
    rows = {line.split()[0]: line for line in text.splitlines() if line.strip().startswith(("tokyo", "here"))}
    assert "03:00" in rows["here"] and "13:00" in rows["tokyo"]  # 03:00 Tokyo = 13:00 New York (EST)
    assert "Z" not in rows["here"] and "+" not in rows["here"]


def test_a_childs_json_level_becomes_the_records_level(rj):
    lines = [
        {"level": "error", "message": "db down"},
        {"level": "WARN", "msg": "slow"},
        {"level_name": "CRITICAL", "message": "monolog"},
        {"level": "verbose", "message": "odd"},
        {"message": "x"},
    ]
    code = "import json\n" + "".join(f"print(json.dumps({json.dumps(line)}))\n" for line in lines)
    rj.write(f'[jobs.j]\ncommand = [{q(PY)}, "-c", {q(code.replace("{", "{{").replace("}", "}}"))}]\n')
    r = rj.run("j")
    assert r.code == 0, r.err
    out = r.events("run.output")
    assert [rec["level"] for rec in out] == ["error", "warning", "critical", "info", "info"]
    assert [rec["data"] for rec in out] == lines  # the child's own level stays in data


def test_completion_needs_no_shell_among_the_ancestors(rj, tmp_path):
    """From cron or a detached session no shell is an ancestor: a named shell still installs,
    and with neither a name nor a shell to find the error is one line, exit 2."""
    home, out = tmp_path / "home", tmp_path / "out"
    home.mkdir()
    # Double fork: runjob's parent exits first, so its ancestors are init's alone.
    orphan = (
        "import os, sys\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        "        fd = os.open(sys.argv[1] + '.tmp', os.O_WRONLY | os.O_CREAT, 0o600)\n"
        "        os.dup2(fd, 1); os.dup2(fd, 2)\n"
        "        pid = os.fork()\n        if pid == 0: os.execv(sys.argv[2], sys.argv[2:])\n"
        "        os.waitpid(pid, 0); os.rename(sys.argv[1] + '.tmp', sys.argv[1])\n"
        "    os._exit(0)\n"
    )
    env = rj.env({"HOME": str(home), "SHELL": "/bin/sh"})
    subprocess.run([PY, "-c", orphan, str(out), RUNJOB, "--install-completion", "bash"], env=env, check=True)
    assert wait_for(out.exists)
    assert "bash completion installed" in out.read_text() and (home / ".bash_completions" / "runjob.sh").exists()
    shown = rj.run("--show-completion", "zsh", env={"HOME": str(home)})
    assert shown.code == 0 and "_RUNJOB_COMPLETE" in shown.out and "compdef" in shown.out, shown.err
    bad = rj.run("--install-completion", "tcsh", env={"HOME": str(home)})
    assert bad.code == 2 and "Traceback" not in bad.err and "tcsh" in bad.err and len(bad.err.splitlines()) == 1
