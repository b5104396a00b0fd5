"""The registry's limits (SPEC sections 1 and 12): bounded durations, no control characters
in free text, params that cannot leave their directory, Redis URLs without passwords and
TTLs that let the child be stopped in time, and a validate that stays linear."""

from __future__ import annotations

import json

import pytest
from conftest import py, q

from runjob.errors import ConfigError
from runjob.registry import validate

DURATION_KEYS = [
    ("timeout = {v}", "jobs.a.timeout"),
    ("kill_grace = {v}", "jobs.a.kill_grace"),
    ("wait = {v}", "jobs.a.wait"),
    ("max_age = {v}", "jobs.a.max_age"),
    ("catch_up = {v}", "jobs.a.catch_up"),
    ("lock_ttl = {v}", "jobs.a.lock_ttl"),
    ("expected_duration = {{ min = {v} }}", "jobs.a.expected_duration.min"),
    ("expected_duration = {{ max = {v} }}", "jobs.a.expected_duration.max"),
    ("retry = {{ delay = {v} }}", "jobs.a.retry.delay"),
    ("retry = {{ max_delay = {v} }}", "jobs.a.retry.max_delay"),
]
BAD_DURATIONS = ['"366d"', "nan", "inf", "-inf", "1e300", '"inf"', '"99999999999999999999d"', "31536001", "-1"]


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as e:
        validate.parse_string(text, "jobs.toml")
    return e.value.errors


@pytest.mark.parametrize("line, path", DURATION_KEYS)
@pytest.mark.parametrize("value", BAD_DURATIONS)
def test_every_duration_is_finite_and_at_most_365_days(line, path, value):
    errors = errors_of('[jobs.a]\ncommand = ["true"]\n' + line.format(v=value) + "\n")
    assert len(errors) == 1 and errors[0].startswith(path + ": "), errors


@pytest.mark.parametrize("key", ["history_keep", "notify_timeout", "ping_timeout", "timeout"])
def test_defaults_durations_are_bounded_too(key):
    (error,) = errors_of(f"[defaults]\n{key} = 1e300\n")
    assert error.startswith(f"defaults.{key}: ") and "365d" in error


def test_365_days_is_the_largest_duration_allowed():
    reg = validate.parse_string('[jobs.a]\ncommand = ["true"]\ntimeout = "365d"\nmax_age = 31536000\n')
    assert reg.jobs["a"].timeout == 365 * 86400 and reg.jobs["a"].max_age == 365 * 86400


def test_attempts_are_bounded_so_backoff_cannot_overflow():
    (error,) = errors_of(
        '[jobs.a]\ncommand = ["true"]\nretry = { attempts = 5000, backoff = "exponential", delay = "1s" }\n'
    )
    assert error.startswith("jobs.a.retry.attempts: must be at most 100")


@pytest.mark.parametrize("how", ["validate", "run"])
def test_an_unbounded_timeout_is_a_config_error_before_anything_runs(rj, how):
    marker = rj.dir / "ran"
    touch = "import sys; open(sys.argv[1], 'w')"
    rj.write(f"[jobs.a]\ncommand = {py(touch, str(marker))}\ntimeout = 1e300\n")
    r = rj.run("validate") if how == "validate" else rj.run("a")
    assert r.code == 78 and "jobs.a.timeout" in (r.err + r.out) and "Traceback" not in r.err
    assert not marker.exists()


def test_a_timeout_of_thirty_days_runs_and_ends_normally(rj):
    """poll() takes a C int of milliseconds (24.8 days): a long timeout must not overflow it."""
    rj.write('[jobs.a]\ncommand = ["true"]\ntimeout = "30d"\n')
    r = rj.run("a")
    assert r.code == 0 and r.one("run.end")["status"] == "success", r.err


def test_timeout_flag_is_bounded_too(rj):
    rj.write('[jobs.a]\ncommand = ["true"]\n')
    r = rj.run("run", "a", "--timeout", "400d")
    assert r.code == 2 and "--timeout" in r.err and "365d" in r.err


def test_a_deeply_nested_value_is_a_config_error_naming_the_file(rj):
    rj.write('[jobs.a]\ncommand = ["true"]\n')
    rj.config.write_text(rj.config.read_text() + "x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    for args in (["validate"], ["a"]):
        r = rj.run(*args)
        assert r.code == 78, r.err
        assert "nested too deeply" in r.err and str(rj.config) in r.err and "Traceback" not in r.err


@pytest.mark.parametrize(
    "line, path",
    [
        ('description = "first\\n*/1 * * * * root rm -rf /"', "jobs.a.description"),
        ('idempotency = "safe\\r\\nExecStartPre=/bin/evil"', "jobs.a.idempotency"),
        ('description = "tab\\there"', "jobs.a.description"),
        ('description = "next\\u2028line"', "jobs.a.description"),
        ('params.p = { description = "x\\ny" }', "jobs.a.params.p.description"),
        ('timezone = "UTC\\n"', "jobs.a.timezone"),
    ],
)
def test_free_text_may_not_hold_control_characters(line, path):
    (error,) = errors_of(f'[jobs.a]\ncommand = ["true"]\n{line}\n')
    assert error.startswith(path + ": control character")


def test_owner_webhook_may_not_hold_control_characters():
    errors = errors_of('[owners.o]\nwebhook = "https://h/x\\nHost: evil"\n')
    assert errors[0].startswith("owners.o.webhook: control character")


@pytest.mark.parametrize("field", ["log_file", "cwd"])
@pytest.mark.parametrize("value", ["..", ".", "a/b", "../../etc", "/etc", "x\ny"])
def test_a_param_in_a_path_stays_one_file_name(rj, field, value):
    (rj.dir / "w").mkdir()
    template = "w/{p}.log" if field == "log_file" else "w/{p}"
    rj.write(f'[jobs.a]\ncommand = ["true"]\n{field} = {q(template)}\n[jobs.a.params.p]\npattern = "(?s).*"\n')
    r = rj.run("run", "a", "--param", f"p={value}")
    assert r.code == 2 and f"cannot go into {field}" in r.err and "Traceback" not in r.err
    assert not list(rj.dir.glob("*.log")) and not (rj.dir / "etc").exists()


def test_a_plain_param_value_in_a_path_works(rj):
    (rj.dir / "w" / "acme").mkdir(parents=True)
    code = "import os; print(os.getcwd())"
    rj.write(
        f'[jobs.a]\ncommand = {py(code)}\ncwd = "w/{{p}}"\nlog_file = "w/{{p}}.log"\n'
        '[jobs.a.params.p]\npattern = "(?s).*"\n'
    )
    r = rj.run("a", "p=acme")
    assert r.code == 0, r.err
    lines = [json.loads(line) for line in (rj.dir / "w" / "acme.log").read_text().splitlines()]
    assert [x["line"] for x in lines if x["event"] == "run.output"] == [str(rj.dir / "w" / "acme")]


def test_a_whole_argument_param_that_may_start_with_a_dash_is_warned_about(rj):
    rj.write(
        '[jobs.a]\ncommand = ["tar", "-czf", "out.tgz", "{path}", "--level={level}"]\n'
        '[jobs.a.params.path]\npattern = "[a-z0-9-]+"\n[jobs.a.params.level]\npattern = "[a-z0-9-]+"\n'
        '[jobs.b]\ncommand = ["echo", "{name}"]\n[jobs.b.params.name]\npattern = "[a-z0-9][a-z0-9-]*"\n'
    )
    r = rj.run("validate")
    assert r.code == 0, r.err
    warnings = [line for line in r.err.splitlines() if "warning" in line]
    warnings = [w for w in warnings if "params" in w]  # (the test state dir under /tmp is warned about too)
    assert len(warnings) == 1 and "jobs.a.params.path" in warnings[0] and '"-"' in warnings[0]
    shown = json.loads(rj.run("validate", "--json").out)["warnings"]
    assert [w for w in shown if "params" in w] == [warnings[0].split(": ", 3)[3]]


SECRET = "hunter2-s3cr3t"


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{SECRET}@127.0.0.1:6379/0",
        f"redis://default:{SECRET}@127.0.0.1:6379/0",
        f"redis://127.0.0.1:6379/0?password={SECRET}",
        f"rediss://127.0.0.1:6379/0?db=1&PASSWORD={SECRET}",
        f"unix:///run/redis.sock?password={SECRET}",
    ],
)
def test_a_password_in_the_redis_url_is_refused_and_never_printed(rj, url):
    rj.write(f'[jobs.a]\ncommand = ["true"]\nlock_backend = {q(url)}\n')
    for args in (["validate"], ["validate", "--json"], ["show", "a", "--json"], ["a"], ["locks", "--json"]):
        r = rj.run(*args)
        assert r.code == 78, (args, r.out, r.err)
        assert "lock_backend: do not write the password in the URL" in r.out + r.err
        assert SECRET not in r.out + r.err


def test_redis_url_options_that_undo_runjobs_deadlines_are_refused():
    (error,) = errors_of('[jobs.a]\ncommand = ["true"]\nlock_backend = "redis://h/0?socket_timeout=3600"\n')
    assert error.startswith("jobs.a.lock_backend: the option socket_timeout is set by runjob")


def test_a_redis_lock_ttl_must_leave_time_to_stop_the_job():
    base = '[jobs.a]\ncommand = ["true"]\nlock_backend = "redis://127.0.0.1/0"\nkill_grace = "10s"\n'
    (error,) = errors_of(base + 'lock_ttl = "20s"\n')
    assert error.startswith("jobs.a.lock_ttl: 20s is too short") and "at least 25s" in error
    assert validate.parse_string(base + 'lock_ttl = "25s"\n').jobs["a"].lock_ttl == 25


def test_validate_is_linear_in_the_length_of_templated_values(rj):
    """400k characters took 8 s when placeholders were scanned quadratically: 2M would take minutes (hang guard)."""
    huge = "x" * 2_000_000 + "{p}" * 100_000 + "{{" * 100_000 + "{}" * 100_000
    rj.write(
        f'[jobs.a]\ncommand = ["echo", {q(huge)}]\nlock_key = {q("k" + "{p}" * 50_000)}\n'
        f'[jobs.a.params.p]\npattern = "[a-z]+"\n'
    )
    r = rj.run("validate", timeout=120)
    assert r.code == 78 and "jobs.a.lock_key: lock key longer than" in r.err


def test_defaults_and_instances_that_would_leave_their_directory_are_config_errors():
    errors = errors_of(
        '[jobs.a]\ncommand = ["true"]\ncwd = "/srv/{p}"\ninstances = [{ p = "ok" }, { p = ".." }]\n'
        '[jobs.a.params.p]\npattern = "[a-z./]+"\ndefault = "a/b"\n'
    )
    assert errors == [
        'jobs.a.params.p.default: cannot go into a path: it contains "/"',
        'jobs.a.instances[1].p: cannot go into a path: ".." is not a file name',
    ]
