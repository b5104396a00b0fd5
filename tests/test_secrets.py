"""A secret value never appears in a record, the history, `show`, `--dry-run` or an error,
however the child spells or splits it (SPEC section 12; the safety issue, point 6)."""

from __future__ import annotations

import json

from conftest import py
from hypothesis import given, settings
from hypothesis import strategies as st

from runjob.records.redact import MASK, Redactor

SECRET = "tok-9f8e7d6c5b4a"


def leaks(text: str, secret: str = SECRET) -> list[str]:
    """Every piece of the secret longer than 4 characters found in `text`."""
    return [secret[i : i + 5] for i in range(len(secret) - 4) if secret[i : i + 5] in text]


def job(rj, code: str, *args: str, extra: str = "") -> None:
    rj.write(f'[jobs.s]\ncommand = {py(code, *args)}\nenv = {{ TOKEN = "{SECRET}" }}\nsecrets = ["TOKEN"]\n{extra}')


def escaped(secret: str, which: str) -> str:
    return "".join(f"\\u{ord(c):04x}" if flag == "1" else c for c, flag in zip(secret, which, strict=True))


def test_escaped_quoted_and_key_forms_of_the_secret_are_masked(rj):
    mix = escaped(SECRET, "1010011100101101")
    code = (
        "import sys\nprint('plain ' + sys.argv[1])\nprint(sys.argv[2])\nprint(sys.argv[3])\n"
        "print(sys.argv[4])\nprint('raw escaped ' + sys.argv[2])"
    )
    lines = [
        SECRET,
        f'{{{{"message": "using {mix}"}}}}',
        f'{{{{"{SECRET}": 1, "nested": ["{mix}"]}}}}',
        f'{{{{"msg": "quoted \\"{SECRET}\\""}}}}',
    ]
    job(rj, code, *lines)
    r = rj.run("s")
    assert not leaks(r.out) and not leaks(r.err)
    out = [o for o in map(json.loads, r.out.splitlines()) if o["event"] == "run.output"]
    assert out[0]["line"] == f"plain {MASK}"
    assert out[1]["message"] == f"using {MASK}" and out[1]["data"] == {"message": f"using {MASK}"}
    assert out[2]["data"] == {MASK: 1, "nested": [MASK]}  # masked, not dropped: the shape stays
    assert out[3]["message"] == f'quoted "{MASK}"'
    assert out[4]["line"] == 'raw escaped {"message": "using ***"}'  # escaped in a plain line too


def test_a_secret_across_the_line_cut_and_the_tail_window_is_masked_whole(rj):
    code = (
        "import sys\nprint('x' * (15360 - 6) + sys.argv[1] + 'y' * 100)\n"
        "sys.stderr.write(sys.argv[1] + 'z' * 4090 + '\\n')"
    )
    job(rj, code, SECRET)
    r = rj.run("s")
    assert not leaks(r.out)
    cut = r.events("run.output")[0]
    assert cut["truncated"] is True and "***" in cut["line"]
    assert r.one("run.end")["stderr_tail"].startswith(MASK + "zzz")


def test_a_multi_line_secret_printed_line_by_line_is_masked(rj):
    key = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG\n-----END KEY-----"
    code = "import os, sys\nfor line in os.environ['KEY'].split('\\n'): print(line, flush=True)"
    rj.write(f'[jobs.k]\ncommand = {py(code)}\nsecrets = ["KEY"]\n')
    r = rj.run("k", env={"KEY": key})
    assert [o["line"] for o in r.events("run.output")] == [MASK] * 3
    assert "MIIEvQ" not in r.out


def test_a_secret_passed_as_a_param_is_masked_in_records_history_and_dry_run(rj):
    extra = '[jobs.s.params.t]\npattern = "[a-z0-9-]+"\n'
    job(rj, "import sys; print(len(sys.argv[1]))", "{t}", extra=extra)
    r = rj.run("s", f"t={SECRET}")
    assert r.code == 0 and not leaks(r.out)
    assert r.one("run.start")["params"] == {"t": MASK}
    assert r.one("run.output")["line"] == str(len(SECRET))  # the child got the real value
    history = rj.run("history", "--json")
    assert json.loads(history.out)[0]["params"] == {"t": MASK} and not leaks(history.out)
    dry = rj.run("s", f"t={SECRET}", "--dry-run")
    assert dry.code == 0 and not leaks(dry.out) and "***" in dry.out


def test_a_secret_default_and_show_json_are_masked(rj):
    extra = f'[jobs.s.params.t]\npattern = "[a-z0-9-]+"\ndefault = "{SECRET}"\n'
    job(rj, "print(1)", "{t}", extra=extra)
    r = rj.run("s")
    assert r.one("run.start")["params"] == {"t": MASK} and not leaks(r.out)
    shown = rj.run("show", "s", "--json")
    assert shown.code == 0 and not leaks(shown.out)
    assert json.loads(shown.out)["env"] == {"TOKEN": MASK}


def _spell(secret: str, flags: list[bool], upper: list[bool]) -> str:
    out = []
    for ch, esc, up in zip(secret, flags, upper, strict=True):
        code = f"{ord(ch):04x}"
        out.append(("\\u" + (code.upper() if up else code)) if esc else ch)
    return "".join(out)


@settings(max_examples=200, deadline=None)
@given(
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x2FF, blacklist_characters="\\"), min_size=3, max_size=20),
    st.data(),
)
def test_any_mix_of_escaped_and_plain_characters_is_masked(secret, data):
    flags = data.draw(st.lists(st.booleans(), min_size=len(secret), max_size=len(secret)))
    upper = data.draw(st.lists(st.booleans(), min_size=len(secret), max_size=len(secret)))
    around = data.draw(st.sampled_from(["", "a ", "\\n", 'x\\"y ']))
    text = around + _spell(secret, flags, upper) + around
    assert Redactor([secret]).text(text) == around + MASK + around


def test_config_errors_and_validate_never_quote_a_secret_value(rj):
    rj.write(
        f'[jobs.s]\ncommand = ["echo", "{SECRET}{{"]\nenv = {{ TOKEN = "{SECRET}" }}\nsecrets = ["TOKEN"]\n'
        f'timeout = "{SECRET}"\n'
    )
    run = rj.run("s")
    assert run.code == 78 and "***" in run.err and not leaks(run.out) and not leaks(run.err)
    for args in (["validate"], ["validate", "--json"]):
        r = rj.run(*args)
        assert r.code == 78 and not leaks(r.out) and not leaks(r.err)


def test_a_secret_param_in_the_lock_key_and_argv_is_masked_in_every_record(rj):
    rj.write(
        f'[jobs.s]\ncommand = {py("import sys; sys.exit(3)", "--token={t}")}\nlock_key = "s.{{t}}"\n'
        f'env = {{ TOKEN = "{SECRET}" }}\nsecrets = ["TOKEN"]\n[jobs.s.params.t]\npattern = "[a-z0-9-]+"\n'
    )
    r = rj.run("s", f"t={SECRET}")
    assert r.code == 3 and not leaks(r.out) and not leaks(r.err)
    start = r.one("run.start")
    assert start["lock_key"] == "s.***" and start["command"][-1] == "--token=***"
    history = rj.run("history", "--json")
    assert json.loads(history.out)[0]["lock_key"] == "s.***" and not leaks(history.out)
    dry = rj.run("s", f"t={SECRET}", "--dry-run", "--format", "json")
    assert not leaks(dry.out) and "s.***" in dry.out
