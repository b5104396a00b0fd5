"""Params: checked against their pattern, substituted per argv element, never a shell."""

from __future__ import annotations

import json

import pytest
from conftest import py, q
from hypothesis import given, settings
from hypothesis import strategies as st

from runjob.errors import UsageError
from runjob.registry import validate
from runjob.registry.templating import placeholders, substitute
from runjob.run import plan

ECHO_ARGV = "import sys, json; print(json.dumps(sys.argv[1:]))"


@given(st.text(), st.text(), st.text())
def test_substitution_is_literal(before, value, after):
    template = before.replace("{", "{{").replace("}", "}}") + "{p}" + after.replace("{", "{{").replace("}", "}}")
    assert placeholders(template) == ["p"]
    assert substitute(template, {"p": value}) == before + value + after


@given(st.text(alphabet="{}ab", max_size=12))
def test_placeholder_parser_never_crashes(template):
    try:
        names = placeholders(template)
    except ValueError as e:
        assert "stray" in str(e)
    else:
        assert substitute(template, {n: "v" for n in names}).count("v") >= len(names)


REG = validate.parse_string(
    '[jobs.a]\ncommand = ["echo", "--x={x}"]\nlock_key = "k.{x}"\n'
    '[jobs.a.params.x]\npattern = "[a-z0-9-]+"\n'
    '[jobs.b]\ncommand = ["echo"]\n[jobs.b.params.n]\npattern = "[0-9]+"\ndefault = "14"\n'
)


@pytest.mark.parametrize(
    "name, given, message",
    [
        ("a", {}, 'job "a" needs param "x"'),
        ("a", {"x": "a b"}, 'param x="a b" does not match'),
        ("a", {"x": "ok", "y": "1"}, 'unknown param "y"'),
        ("a", {"x": "x/../y"}, "does not match"),
        ("b", {"n": "14; rm -rf /"}, "does not match"),
        ("b", {"n": "1\n2"}, "does not match"),  # fullmatch: a trailing line never sneaks in
        ("zzz", {}, 'unknown job "zzz"'),
    ],
)
def test_bad_params_are_usage_errors(name, given, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        plan.build(REG, name, given)


def test_default_and_substitution():
    assert plan.build(REG, "b", {}).params == {"n": "14"}
    p = plan.build(REG, "a", {"x": "acme-1"})
    assert p.argv == ["echo", "--x=acme-1"] and p.lock_key == "k.acme-1"


@pytest.mark.parametrize("words", [["x"], ["=v"], ["x=1", "x=2"]])
def test_malformed_param_words(words):
    with pytest.raises(UsageError):
        plan.parse_params(words)


def test_usage_errors_exit_2_on_the_command_line(rj):
    rj.write('[jobs.a]\ncommand = ["true"]\n[jobs.a.params.x]\npattern = "[a-z]+"\n')
    for args, text in [
        (["a"], "needs param"),
        (["a", "x=1"], "does not match"),
        (["a", "x=a", "y=b"], "unknown param"),
        (["nope"], "unknown job"),
        (["a", "oops"], "expected key=value"),
        (["run", "a", "--bogus"], "No such option"),
    ]:
        r = rj.run(*args)
        assert r.code == 2, (args, r.err)
        assert text in r.err and r.out == ""


hostile = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=40
)


@settings(max_examples=25, deadline=None)
@given(value=hostile)
def test_shell_metacharacters_stay_one_literal_argument(tmp_path_factory, value):
    from conftest import Env

    rj = Env(tmp_path_factory.mktemp("p"))
    rj.write(f'[jobs.echo]\ncommand = {py(ECHO_ARGV, "--v={v}", "last")}\n[jobs.echo.params.v]\npattern = "(?s).+"\n')
    r = rj.run("run", "echo", "--param", f"v={value}")
    assert r.code == 0, r.err
    assert json.loads(r.one("run.output")["line"]) == [f"--v={value}", "last"]


def test_classic_injections_are_inert(rj):
    rj.write(f'[jobs.echo]\ncommand = {py(ECHO_ARGV, "{v}")}\n[jobs.echo.params.v]\npattern = ".+"\n')
    for value in ["$(touch pwned)", "`touch pwned`", "a; touch pwned", "a b", "'\"", "| tee pwned", "--help"]:
        r = rj.run("echo", f"v={value}")
        assert json.loads(r.one("run.output")["line"]) == [value]
    assert not (rj.dir / "pwned").exists()


def test_env_and_cwd_are_templated(rj):
    (rj.dir / "work-a").mkdir()
    code = "import os; print(os.getcwd(), os.environ['WHICH'])"
    rj.write(
        f'[jobs.t]\ncommand = {py(code)}\ncwd = "work-{{w}}"\nenv = {{ WHICH = "w={{w}}" }}\n'
        f'[jobs.t.params.w]\npattern = "[a-z]"\n'
    )
    r = rj.run("t", "w=a")
    assert r.one("run.output")["line"] == f"{rj.dir / 'work-a'} w=a"


def test_lock_key_made_by_params_is_checked(rj):
    rj.write('[jobs.t]\ncommand = ["true"]\nlock_key = "k.{w}"\n[jobs.t.params.w]\npattern = ".+"\n')
    r = rj.run("t", "w=../../etc")
    assert r.code == 2 and "bad lock key" in r.err
    assert not (rj.state / "locks").exists() or not any((rj.state / "locks").iterdir())
    assert q("x")  # conftest helper sanity: TOML strings
