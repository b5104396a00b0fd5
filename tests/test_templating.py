"""Placeholders (SPEC section 1): only `{identifier}` is one, every other brace is literal,
`{{`/`}}` escape; a param in a path stays one component."""

from __future__ import annotations

import json
import os
import re

from conftest import py
from hypothesis import given
from hypothesis import strategies as st

from runjob.templating import path_component_problem, placeholders, substitute

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
    rj.write(f"[jobs.a]\ncommand = {py(echo)[:-1]}, {', '.join(json.dumps(a) for a in argv)}]\n"
             '[jobs.a.params.p]\npattern = "[a-z]+"\n')  # fmt: skip
    r = rj.run("a", "p=val")
    assert r.code == 0, r.err
    assert json.loads(r.one("run.output")["line"]) == ["{}", ";", '{"k": [1, 2]}', "val", "{ p }", "{p}"]
