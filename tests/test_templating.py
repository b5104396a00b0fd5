"""Placeholders (SPEC section 1): only `{identifier}` is one, every other brace is literal,
`{{`/`}}` escape; a param in a path stays one component."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
from conftest import py
from hypothesis import given, settings
from hypothesis import strategies as st

from runjob.errors import ConfigError
from runjob.registry import validate
from runjob.registry.templating import path_component_problem, placeholders, substitute

PLACEHOLDER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")
names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)
brace_text = st.text(alphabet='{}ab_1 "$:,', max_size=40)


@given(brace_text)
def test_text_without_placeholders_or_doubled_braces_is_kept_as_written(text):
    if "{{" in text or "}}" in text or PLACEHOLDER.search(text):
        return
    assert placeholders(text) == []
    assert substitute(text, {}) == text


@given(st.lists(st.tuples(brace_text, names), max_size=6), brace_text)
def test_every_identifier_in_braces_is_found_and_nothing_else(pieces, tail):
    def escape(text: str) -> str:
        return text.replace("{", "{{").replace("}", "}}")

    template = "".join(escape(text) + "{" + name + "}" for text, name in pieces) + escape(tail)
    assert placeholders(template) == [name for _, name in pieces]
    values = {name: f"<{name.upper()}>" for _, name in pieces}
    assert substitute(template, values) == "".join(text + values[name] for text, name in pieces) + tail


@given(st.text(max_size=60))
def test_any_text_scans_without_error(text):
    found = placeholders(text)
    assert substitute(text, {name: "v" for name in found}).count("v") >= len(found)


def test_braces_that_are_no_placeholder_are_literal():
    assert substitute("{}", {}) == "{}"
    assert substitute('{"a": 1, "b": {"c": [1]} }', {}) == '{"a": 1, "b": {"c": [1]} }'
    assert substitute("$ { x } {1a} {a-b} }{", {}) == "$ { x } {1a} {a-b} }{"
    assert substitute("{{}}", {}) == "{}" and substitute("{{p}}", {"p": "v"}) == "{p}"
    assert substitute("{{{p}}}", {"p": "v"}) == "{v}"


@given(st.text(max_size=30))
def test_a_value_that_passes_stays_one_component_under_its_directory(value):
    problem = path_component_problem(value)
    if problem is None:
        joined = os.path.normpath(os.path.join("/base/dir", value + ".log"))
        assert os.path.dirname(joined) == "/base/dir" and "\n" not in joined and "\0" not in joined
    else:
        assert value in ("", ".", "..") or any(c in value for c in "/\0\n\r")


def test_find_exec_and_json_arguments_run_as_written(rj):
    echo = "import json, sys; print(json.dumps(sys.argv[1:]))"
    argv = ["{}", ";", '{"k": [1, 2]}', "{p}", "{ p }", "{{p}}"]
    rj.write(
        f"[jobs.a]\ncommand = {py(echo)[:-1]}, {', '.join(json.dumps(a) for a in argv)}]\n"
        '[jobs.a.params.p]\npattern = "[a-z]+"\n'
    )
    r = rj.run("a", "p=val")
    assert r.code == 0, r.err
    assert json.loads(r.one("run.output")["line"]) == ["{}", ";", '{"k": [1, 2]}', "val", "{ p }", "{p}"]


SHELL_JOB = '[jobs.s]\ncommand = {command}\nshell = true\n[jobs.s.params.v]\npattern = "(?s).*"\n'


@settings(max_examples=25, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=30))
def test_a_shell_job_gets_param_values_as_data_never_as_script(tmp_path_factory, value):
    from conftest import Env

    rj = Env(tmp_path_factory.mktemp("sh"))
    script = "printf '%s|' {v} \"[{v}]\" | od -An -c | tr -d ' \\n'; echo; printf '%s' \"$0\""
    rj.write(SHELL_JOB.format(command=json.dumps(script)))
    r = rj.run("run", "s", "--param", f"v={value}")
    assert r.code == 0, r.err
    expected = subprocess.run(
        ["sh", "-c", "printf '%s|' \"$1\" \"[$1]\" | od -An -c | tr -d ' \\n'", "x", value],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert [o["line"] for o in r.events("run.output")] == [expected, "s"]


@pytest.mark.parametrize(
    "command, extra, error",
    [
        ('"cat /var/log/app.log | gzip > /tmp/x.gz"', "", 'jobs.s.command: "|" only means something to a shell'),
        ('"cd /srv && make"', "", 'jobs.s.command: "&&" only means something to a shell'),
        ('"echo $(date)"', "", 'jobs.s.command: "$(" only means something to a shell'),
        ('["sh", "-c", "echo a | b"]', "shell = true", "jobs.s.command: shell = true needs the command as one string"),
        ('"echo {w}"', "shell = true", 'jobs.s.command: placeholder "{w}" has no param'),
    ],
)
def test_shell_syntax_needs_shell_true(command, extra, error):
    with pytest.raises(ConfigError) as e:
        validate.parse_string(f'[jobs.s]\ncommand = {command}\n{extra}\n[jobs.s.params.v]\npattern = "[a-z]+"\n')
    assert any(x.startswith(error) for x in e.value.errors), e.value.errors
    if "to a shell" in error:
        assert "shell = true" in e.value.errors[0]


def test_a_placeholder_inside_single_quotes_stays_data(rj):
    rj.write(SHELL_JOB.format(command=json.dumps("echo 'it is {v}; $HOME'")))
    r = rj.run("s", "v=a b;$(id)")
    assert r.code == 0, r.err
    assert r.one("run.output")["line"] == "it is a b;$(id); $HOME"


def test_a_quoted_operator_is_no_shell_syntax():
    reg = validate.parse_string("[jobs.s]\ncommand = \"grep -E 'a|b' file.txt\"\n")
    assert reg.jobs["s"].command == ["grep", "-E", "a|b", "file.txt"]


def test_a_shell_job_keeps_the_shells_own_braces(rj):
    rj.write(SHELL_JOB.format(command=json.dumps('X=1; echo "${X}-{v}-{}" {job}')))
    r = rj.run("s", "v=ok")
    assert r.code == 0, r.err
    assert r.one("run.output")["line"] == "1-ok-{} s"
