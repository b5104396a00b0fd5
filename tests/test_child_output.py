"""The child's output as records an aggregator can trust line by line (issue: records):
carriage returns, progress bars, seq, message and level from a child's JSON, record
size, several runs on one pipe, one timestamp form."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import PY, RUNJOB, TIMESTAMP, py
from hypothesis import given, settings
from hypothesis import strategies as st

from runjob.records.output import LineSplitter


def strict(line: str) -> dict:
    def refuse(name: str) -> None:
        raise ValueError(f"not JSON: {name}")

    return json.loads(line, parse_constant=refuse)


def out_records(r) -> list[dict]:
    return [strict(line) for line in r.out.split("\n") if line]


# A child that writes each of its arguments with its own write() and flush.
WRITES = "import sys, os\nfor a in sys.argv[1:]: os.write(1, a.encode().decode('unicode_escape').encode('latin-1'))"


def test_crlf_loses_its_cr_however_the_pipe_chunks_it(rj):
    lines = ["sync started", "fetched 120 rows", "sync finished"]
    per_line = [f"{t}\\r\\n" for t in lines]
    rj.write(f"[jobs.a]\ncommand = {py(WRITES, *per_line, ''.join(per_line))}\n")
    out = [o for o in out_records(rj.run("a")) if o["event"] == "run.output"]
    assert [o["line"] for o in out] == lines * 2 and [o["message"] for o in out] == lines * 2
    assert not any("\r" in json.dumps(o) for o in out)


def test_a_complete_line_inside_a_progress_bar_is_its_own_record_and_in_the_tail(rj):
    bar = "import sys\nfor i in range(1500):\n"
    bar += "    sys.stderr.write('\\rimporting: %4d/1500 ' % i + '#' * 60); sys.stderr.flush()\n"
    bar += "    if i == 900: sys.stderr.write('\\r' + ' ' * 80 + '\\rWARNING: row 900 rejected\\n')\n"
    bar += "for i in range(60): sys.stderr.write('\\rtail redraw %d ' % i + '=' * 70)\n"
    bar += "sys.stderr.write('\\n'); print('imported 1499 of 1500 rows')"
    rj.write(f"[jobs.b]\ncommand = {py(bar)}\n")
    r = rj.run("b")
    out = [o for o in out_records(r) if o["event"] == "run.output"]
    assert [o["line"] for o in out if o["stream"] == "stderr"] == [
        "WARNING: row 900 rejected",
        "tail redraw 59 " + "=" * 70,
    ]
    assert [o["line"] for o in out if o["stream"] == "stdout"] == ["imported 1499 of 1500 rows"]
    assert not any(o.get("truncated") for o in out)
    assert r.one("run.end")["stderr_tail"] == "WARNING: row 900 rejected\ntail redraw 59 " + "=" * 70 + "\n"


def test_every_record_has_seq_in_write_order_so_none_are_identical(rj):
    code = "import sys\nfor _ in range(3): print('rejected row: unknown SKU A-1')\nprint('same', file=sys.stderr)\nsys.exit(1)"
    rj.write(f"[jobs.i]\ncommand = {py(code)}\n")
    r = rj.run("i")
    lines = [line for line in r.out.split("\n") if line]
    assert [strict(line)["seq"] for line in lines] == list(range(len(lines))) and len(lines) == 7
    assert len(set(lines)) == len(lines)
    assert all(list(strict(line))[9] == "seq" for line in lines)  # right after the common fields


@pytest.mark.parametrize(
    "child, message, level",
    [
        ({"message": {"code": 502}, "msg": "upstream failed"}, "upstream failed", "info"),
        ({"levelname": "WARNING", "message": "retrying capture"}, "retrying capture", "warning"),
        ({"severity": "ERROR", "message": "capture abandoned", "order_id": 81}, "capture abandoned", "error"),
        ({"msg": "heartbeat", "level": "chatty"}, "heartbeat", "info"),
        ({"event": "user.login", "level": "debug"}, "user.login", "debug"),
        ({"level": 30, "code": 1}, "", "info"),
    ],
)
def test_message_and_level_from_a_childs_json_line(rj, child, message, level):
    arg = json.dumps(child).replace("{", "{{").replace("}", "}}")  # literal braces in the registry
    rj.write(f"[jobs.j]\ncommand = {py('import sys; print(sys.argv[1])', arg)}\n")
    (rec,) = [o for o in out_records(rj.run("j")) if o["event"] == "run.output"]
    assert (rec["message"], rec["level"], rec["data"]) == (message, level, child)


def test_records_fit_16k_and_carry_the_line_once(rj):
    code = "print('a' * 8192); print('b' * 40960); print('é' * 12000); print('\\x01' * 5000); print('done')"
    rj.write(f"[jobs.big]\ncommand = {py(code)}\n")
    r = rj.run("big")
    raw = r.out.encode().split(b"\n")[:-1]
    assert all(len(line) + 1 <= 16384 for line in raw)
    out = [o for o in map(strict, raw) if o["event"] == "run.output"]
    assert out[0]["line"] == "a" * 8192 and out[0]["message"] == "a" * 80 and "truncated" not in out[0]
    assert out[1]["truncated"] is True and set(out[1]["line"]) == {"b"} and len(out[1]["line"]) > 14000
    assert out[2]["truncated"] is True and set(out[2]["line"]) == {"é"}
    assert out[3]["truncated"] is True and set(out[3]["line"]) == {"\x01"}
    assert out[4]["line"] == "done" and "truncated" not in out[4]


def test_the_record_limit_is_settable(rj):
    rj.write(f"[jobs.big]\ncommand = {py('print(chr(120) * 8192)')}\n")
    r = rj.run("big", env={"RUNJOB_RECORD_MAX": "4096"})
    assert all(len(line.encode()) + 1 <= 4096 for line in r.out.split("\n")[:-1])
    assert r.one("run.output")["truncated"] is True


def test_runs_started_by_tick_never_tear_each_others_records_on_a_pipe(rj):
    printer = "import sys\nfor i in range(20000): print('%s line %05d ' % (sys.argv[1], i) + 'x' * 50)"
    rj.write("".join(f'[jobs.feed-{n}]\ncommand = {py(printer, n)}\nschedule = "* * * * *"\n' for n in "abcd"))
    proc = subprocess.Popen([RUNJOB, "tick"], stdout=subprocess.PIPE, env=rj.env(), cwd=rj.dir)
    lines = [line for line in proc.stdout.read().split(b"\n") if line]  # to EOF: every run closed the pipe
    assert proc.wait() == 0
    records = [strict(line.decode()) for line in lines]  # each line one whole record
    assert len(records) == 4 * 20003 + 1
    for n in "abcd":
        got = [o["line"] for o in records if o.get("job") == f"feed-{n}" and o["event"] == "run.output"]
        assert got == [f"{n} line {i:05d} " + "x" * 50 for i in range(20000)]


def test_one_timestamp_form_in_records_and_json_outputs(rj):
    rj.write('[jobs.h]\ncommand = ["true"]\nschedule = "17 * * * *"\n')
    rj.run("h")
    tz = {"TZ": "Europe/Berlin"}
    (tick,) = [o for o in out_records(rj.run("tick", env=tz)) if o["event"] == "tick"]
    (status,) = json.loads(rj.run("status", "--json", env=tz).out)
    (listed,) = json.loads(rj.run("list", "--json", env=tz).out)
    shown = json.loads(rj.run("show", "h", "--json", env=tz).out)
    stamps = [tick["minute"], status["next_due"], status["last_run_at"], *listed["next"], *shown["next"]]
    assert all(TIMESTAMP.match(s) for s in stamps), stamps
    assert status["next_due"][14:] == "17:00.000Z"


def _segments(data: bytes) -> list[bytes]:
    """The rule, on the whole output at once: lines, CRs at the end dropped, last redraw kept."""
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return [line.rstrip(b"\r").rpartition(b"\r")[2] for line in lines]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"a", b"bc", b"\r", b"\n", b"\r\n", b"xyz" * 5]), max_size=60), st.data())
def test_line_splitting_does_not_depend_on_chunking(pieces, data):
    stream = b"".join(pieces)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    splitter, got = LineSplitter(1000), []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        for lines, truncated, block in splitter.feed(stream[start:end]):
            assert block in (b"", b"\n".join(lines))
            assert not truncated
            got.extend(lines)
    rest = splitter.finish()
    if stream and not stream.endswith(b"\n"):  # a last line without its newline
        got.append(rest)
    assert got == _segments(stream)


assert PY
