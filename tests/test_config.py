"""Registry loading and validation: every error reported with its key path, exit 78."""

from __future__ import annotations

import json

import pytest
from conftest import q
from hypothesis import given, settings
from hypothesis import strategies as st

from runjob.durations import format_duration, parse_duration
from runjob.errors import ConfigError
from runjob.registry import config, loader, validate
from runjob.registry.schema import JOB

GOOD = """
[owners.ops]
command = ["true"]

[jobs.a]
command = ["echo", "{x}"]
lock_key = "cron.a.{x}"
owners = { responsible = "ops" }
[jobs.a.params.x]
pattern = "[a-z]+"
default = "all"
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as e:
        validate.parse_string(text, "jobs.toml")
    return e.value.errors


def test_good_registry_merges_defaults():
    reg = validate.parse_string('[defaults]\ntimeout = "90s"\nretry = { attempts = 2 }\n' + GOOD)
    job = reg.jobs["a"]
    assert job.timeout == 90.0
    assert job.retry["attempts"] == 2 and job.retry["backoff"] == "fixed"  # table merged key by key
    assert job.kill_grace == 10.0 and job.output == "json" and job.on_busy == "skip"
    assert job.lock_key == "cron.a.{x}"


def test_job_class_declares_every_schema_key():
    assert set(JOB) <= set(config.Job.__annotations__)


def test_command_string_is_split_with_shlex():
    reg = validate.parse_string("[jobs.a]\ncommand = \"echo 'a b' c\"\n")
    assert reg.jobs["a"].command == ["echo", "a b", "c"]


BAD = [
    ('[jobs.a]\ncommand = ["x"]\ntimeout = "10x"\n', "jobs.a.timeout: bad duration"),
    ('[jobs.a]\ncommand = ["x"]\nretry = { delay = "soon" }\n', "jobs.a.retry.delay: bad duration"),
    ('[jobs.a]\ncommand = ["x"]\nretry = { attempts = 0 }\n', "jobs.a.retry.attempts: must be at least 1"),
    ('[jobs.a]\ncommand = ["x"]\ntimout = "1s"\n', "jobs.a.timout: unknown key"),
    ('[jobs.a]\ncommand = ["x"]\nschedule = "61 * * * *"\n', "jobs.a.schedule: bad cron expression"),
    ('[jobs.a]\ncommand = ["x"]\nschedule = "@reboot"\n', "jobs.a.schedule: unsupported alias"),
    ('[jobs.a]\ncommand = ["x"]\ntimezone = "Mars/Base"\n', "jobs.a.timezone: unknown time zone"),
    ('[jobs.a]\ncommand = ["x", "{who}"]\n', 'jobs.a.command[1]: placeholder "{who}" has no param'),
    ('[jobs.a]\ncommand = ["x"]\nlog_file = "/l/{y}.log"\n', 'jobs.a.log_file: placeholder "{y}"'),
    ('[jobs.a]\ncommand = ["x"]\nenv = { A = "{z}" }\n', 'jobs.a.env.A: placeholder "{z}"'),
    ('[jobs.a]\ncommand = ["x"]\nlock_key = "../etc/x"\n', "jobs.a.lock_key: bad lock key"),
    ('[jobs.a]\ncommand = ["x"]\nlock_key = "a/b"\n', "jobs.a.lock_key: bad lock key"),
    ('[jobs.a]\ncommand = ["x"]\nowners = { responsible = "nobody" }\n', 'jobs.a.owners.responsible: owner "nobody"'),
    (
        '[jobs.a]\ncommand = ["x"]\ntransient = { stderr_patterns = ["(("] }\n',
        "jobs.a.transient.stderr_patterns: bad regex",
    ),
    ('[jobs.a]\ncommand = ["x"]\n[jobs.a.params.p]\npattern = "[a-"\n', "jobs.a.params.p.pattern: bad regex"),
    ('[jobs.a]\ncommand = ["x"]\n[jobs.a.params.p]\npattern = "[a-z]+"\ndefault = "A1"\n', "jobs.a.params.p.default"),
    ('[jobs.a]\ncommand = ["x"]\n[jobs.a.params."bad-name"]\n', "jobs.a.params.bad-name: bad param name"),
    ('[jobs.a]\ncommand = ["x"]\noutput = "loud"\n', "jobs.a.output: expected one of json, passthrough, discard"),
    ('[jobs.a]\ncommand = ["x"]\non_busy = "queue"\n', "jobs.a.on_busy: expected one of"),
    ("[jobs.a]\ncommand = []\n", "jobs.a.command: expected a non-empty list"),
    ("[jobs.a]\ndescription = 'no command'\n", "jobs.a.command: required"),
    ('[jobs.A]\ncommand = ["x"]\n', "jobs.A: bad job name"),
    ('[jobs.list]\ncommand = ["x"]\n', 'jobs.list: "list" is a runjob subcommand'),
    ('[jobs.a]\ncommand = ["x"]\nretry = { jitter = "yes" }\n', "jobs.a.retry.jitter: expected true or false"),
    ('[jobs.a]\ncommand = ["x"]\nexpected_duration = { min = "5m", max = "1m" }\n', "min is greater than max"),
    ('[defaults]\nwait = "forever"\n', "defaults.wait: bad duration"),
    ('[defaults]\ncommand = ["x"]\n', "defaults.command: unknown key"),
    ('[owners.ops]\nemail = "x@y"\n', "owners.ops.email: unknown key"),
    ("[owners.ops]\n", "owners.ops: give a command or a webhook"),
    ('jobs = "none"\n', "jobs: expected a table"),
    ("[surprise]\n", "surprise: unknown key"),
]


@pytest.mark.parametrize("text, expected", BAD, ids=[b[1][:40] for b in BAD])
def test_bad_config_names_its_key_path(text, expected):
    errors = errors_of(text)
    assert any(expected in e for e in errors), errors


def test_all_errors_are_reported_together():
    text = '[jobs.a]\ncommand = ["x"]\ntimeout = "x"\n[jobs.b]\ncommand = ["y", "{p}"]\nwait = 3\nfoo = 1\n'
    errors = errors_of(text)
    assert len(errors) == 3
    assert {e.split(":")[0] for e in errors} == {"jobs.a.timeout", "jobs.b.command[1]", "jobs.b.foo"}


def test_toml_syntax_error_has_line_and_column():
    errors = errors_of('[jobs.a]\ncommand = ["x"\ntimeout = 1\n')
    assert len(errors) == 1 and errors[0].startswith("line 3, column") and "TOML syntax error" in errors[0]


def test_validate_cli_reports_every_error_with_file_and_path(rj):
    rj.write('[jobs.a]\ncommand = ["x"]\ntimeout = "10x"\nretry = { delay = "z" }\n')
    r = rj.run("validate")
    assert r.code == 78
    lines = r.err.strip().splitlines()
    assert len(lines) == 2
    assert all(line.startswith(f"runjob: {rj.config}: jobs.a.") for line in lines)
    r = rj.run("validate", "--json")
    assert r.code == 78 and json.loads(r.out)["valid"] is False and len(json.loads(r.out)["errors"]) == 2


def test_run_with_bad_config_exits_78_with_config_error_record(rj):
    rj.write('[jobs.a]\ncommand = ["true"]\nretry = { attempts = "3" }\n')
    r = rj.run("a")
    assert r.code == 78
    rec = r.one("config.error")
    assert rec["level"] == "error" and "jobs.a.retry.attempts" in rec["errors"][0]
    assert "jobs.a.retry.attempts: expected an integer" in r.err


def test_missing_registry_is_a_config_error(rj):
    r = rj.run("validate", env={"RUNJOB_CONFIG": str(rj.dir / "nope.toml")})
    assert r.code == 78 and "nope.toml: cannot read" in r.err


def test_config_flag_beats_environment(rj, tmp_path):
    other = tmp_path / "other.toml"
    other.write_text(f'[defaults]\nstate_dir = {q(str(rj.state))}\n[jobs.only-here]\ncommand = ["true"]\n')
    rj.write('[jobs.a]\ncommand = ["true"]\n')
    r = rj.run("--config", str(other), "list", "--json")
    assert [j["name"] for j in json.loads(r.out)] == ["only-here"]
    assert rj.run("--config", str(other), "only-here").code == 0


def test_schema_validates_the_example_registry(rj):
    import tomllib
    from pathlib import Path

    jsonschema = pytest.importorskip("jsonschema")
    r = rj.run("schema")
    assert r.code == 0
    schema = json.loads(r.out)
    example = tomllib.loads((Path(__file__).parent.parent / "jobs.toml").read_text())
    jsonschema.validate(example, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"jobs": {"a": {"command": ["x"], "timout": "1s"}}}, schema)


def test_example_registry_is_valid():
    from pathlib import Path

    reg = loader.load(str(Path(__file__).parent.parent / "jobs.toml"), check_schedules=True)
    assert len(reg.jobs) >= 12


durations = st.one_of(
    st.integers(0, 10**7).map(float),
    st.integers(1, 999).map(lambda ms: ms / 1000),
)


@given(durations)
def test_duration_format_round_trips(seconds):
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text, seconds",
    [("250ms", 0.25), ("0.5s", 0.5), ("90s", 90), ("15m", 900), ("1h30m", 5400), ("2d", 172800), (42, 42), (1.5, 1.5)],
)
def test_duration_examples_from_the_spec(text, seconds):
    assert parse_duration(text) == seconds


@given(st.text(max_size=12))
def test_duration_parser_never_crashes(text):
    try:
        assert parse_duration(text) >= 0
    except ValueError as e:
        assert str(e)


@settings(max_examples=200)
@given(st.text(max_size=300))
def test_any_toml_text_is_a_registry_or_a_config_error(text):
    try:
        validate.parse_string(text, "fuzz.toml")
    except ConfigError as e:
        assert e.errors and all(isinstance(x, str) and x for x in e.errors)


def test_registry_cache_never_serves_an_old_file(rj, tmp_path):
    """Same size, same mtime: only the content differs, and the run must see it."""
    import os

    cache = tmp_path / "cache"
    env = {"XDG_CACHE_HOME": str(cache)}
    rj.write('[jobs.e]\ncommand = ["echo", "one"]\n')
    stat = os.stat(rj.config)
    assert rj.run("e", env=env).one("run.output")["line"] == "one"
    assert list((cache / "runjob").iterdir())  # the cache was written
    rj.config.write_text(rj.config.read_text().replace('"one"', '"two"'))
    os.utime(rj.config, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert rj.run("e", env=env).one("run.output")["line"] == "two"
    rj.config.write_text(rj.config.read_text().replace('"two"', '"x"\ntimeout = "soon"'))
    assert rj.run("e", env=env).code == 78  # a broken edit is caught, not hidden by the cache


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_the_default_state_dir_is_named_by_zlib_s_crc32(data):
    """The default state dir's name is zlib.crc32 of the registry's real path; computing it
    without zlib must give the same name, or an upgrade would move every job's locks and history."""
    import zlib

    assert config.crc32(data) == zlib.crc32(data)
