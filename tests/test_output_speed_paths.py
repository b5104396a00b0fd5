"""The fast paths of JSON output (issue 12 point 4): what makes them fast must never change
what is written. Records of plain lines are joined once and written whole to the kept file
and stdout; a timestamp reuses the text of its second; a block is plain without a line
that starts a JSON object."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

from conftest import RUNJOB, py
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runjob.records.encoding import timestamp
from runjob.records.kept_file import Expander
from runjob.records.logs import JsonSink, Records
from runjob.records.output import is_plain

PLAIN = bytes(b for b in range(0x20, 0x80) if b not in b'"\\')


def reference_plain(block: bytes) -> bool:
    lines = block.split(b"\n")
    return all(all(b in PLAIN for b in line) and not line.startswith(b"{") for line in lines)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=12) | st.sampled_from([b"{", b"}", b"{a}", b" {", b'"', b"\\", b"\r"]), max_size=8))
def test_is_plain_agrees_with_its_definition(pieces):
    block = b"\n".join(pieces)
    assert is_plain(block) == reference_plain(block)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=4102444800, allow_nan=False), min_size=1, max_size=6))
def test_a_timestamp_is_always_that_of_its_own_second(moments):
    for t in moments:  # in any order: the cached second must never leak into another
        expected = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"
        assert timestamp(t) == expected


def read_slowly(fd: int, into: bytearray) -> None:
    """A reader that takes small reads: runjob's pipe fills and its writes come back short."""
    while chunk := os.read(fd, 997):
        into += chunk


def test_plain_lines_through_a_small_reading_pipe_come_out_whole_in_order_and_kept_alike(rj):
    count = 120_000
    code = (
        "import sys\nw = sys.stdout.buffer.write\n"
        f"for i in range({count}): w(b'line %06d {{not json}} ' % i + b'x' * (i % 97) + b'\\n')\n"
    )
    rj.write(f"[jobs.many]\ncommand = {py(code)}\n")
    r, w = os.pipe()
    got = bytearray()
    reader = threading.Thread(target=read_slowly, args=(r, got))
    reader.start()
    proc = subprocess.run([RUNJOB, "many"], stdout=w, stderr=subprocess.PIPE, env=rj.env(), cwd=rj.dir)
    os.close(w)
    reader.join()
    os.close(r)
    assert proc.returncode == 0, proc.stderr
    text = bytes(got).decode()
    records = [json.loads(line, parse_constant=lambda c: 1 / 0) for line in text.splitlines()]
    assert [rec["seq"] for rec in records] == list(range(len(records)))
    lines = [rec["line"] for rec in records if rec["event"] == "run.output"]
    assert lines == [f"line {i:06d} {{not json}} " + "x" * (i % 97) for i in range(count)]
    assert all(rec["message"] == rec["line"][:80] for rec in records if rec["event"] == "run.output")
    [kept] = (rj.state / "runs" / "many").glob("*.jsonl")
    assert kept.stat().st_size < len(got) / 4  # the lines kept, not their records
    assert rj.run("logs", kept.stem).out == text  # which `logs` gives back as written


def test_plain_and_escaped_lines_interleaved_keep_their_order_and_seq(rj):
    """Blocks that take the fast path and blocks that do not (a quote, a tab, a JSON line)
    alternate: seq and order are those of the lines."""
    code = (
        "import sys\n"
        "for i in range(3000):\n"
        "    kind = i % 4\n"
        "    text = f'plain {i}' if kind == 0 else f'quote \"{i}\"' if kind == 1 else "
        "'{\"n\": %d}' % i if kind == 2 else f'tab\\t{i}'\n"
        "    print(text, flush=(i % 7 == 0))\n"
    )
    rj.write(f"[jobs.mixed]\ncommand = {py(code)}\n")
    res = rj.run("mixed")
    assert res.code == 0, res.err
    out = res.events("run.output")
    seen = [o["data"]["n"] if "data" in o else o["line"] for o in out]
    expected = [
        f"plain {i}" if i % 4 == 0 else f'quote "{i}"' if i % 4 == 1 else i if i % 4 == 2 else f"tab\t{i}"
        for i in range(3000)
    ]
    assert seen == expected
    assert [r["seq"] for r in res.records] == list(range(len(res.records)))


def sink_run(tmp: Path, blocks: list[list[bytes]]) -> tuple[bytes, bytes]:
    """A run's records through a real JsonSink into a log file and a kept file: (log, kept)."""
    log, runs = tmp / "out.log", tmp / "state" / "runs"
    runs.parent.mkdir(mode=0o700)
    sink = JsonSink(str(log), keep=(str(runs), 5))
    records = Records(sink, "job", "4c6f7bd8-6a2e-4f0e-9b0e-3c1f0c1d2e3f")
    records.emit("run.start", "started")
    for i, lines in enumerate(blocks):
        if i % 3 == 2:
            sink.output(records.common, "stderr", [x.decode() + ' "q"' for x in lines], 1)
        else:
            sink.output_plain(records.common, "stdout" if i % 2 else "stderr", lines, 1 + i % 2)
    records.emit("run.end", "done", status="success")
    sink.close()
    [kept] = runs.glob("*/*.jsonl")
    return log.read_bytes(), kept.read_bytes()


plain_line = st.binary(max_size=120).map(lambda b: bytes(c for c in b if c in PLAIN))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.lists(plain_line, min_size=1, max_size=30), max_size=8), st.data())
def test_a_kept_file_read_in_any_pieces_gives_the_records_as_written(tmp_path_factory, blocks, data):
    written, kept = sink_run(tmp_path_factory.mktemp("k"), blocks)
    assert kept.count(b"\x1e") == sum(1 for i, _ in enumerate(blocks) if i % 3 != 2)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(kept)), max_size=12)))
    expander = Expander()
    got = b"".join(expander.feed(kept[a:b]) for a, b in zip([0, *cuts], [*cuts, len(kept)], strict=True))
    assert (got, expander.rest) == (written, b"")
    assert [json.loads(x)["seq"] for x in written.splitlines()] == list(range(len(written.splitlines())))


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=12).map(lambda s: s + "%d"))
def test_a_percent_in_a_common_field_is_written_and_kept_as_given(rj, correlation_id):
    """The bulk path fills seq into a %-template: a correlation id holding `%d` (or `%%`, `%s`)
    must come out as given on stdout, in `runjob logs` and in a quiet run's replay."""
    rj.write(f"[jobs.pct]\ncommand = {py('print(chr(97)); print(chr(98)); raise SystemExit(3)')}\n")
    loud = rj.run("pct", env={"RUNJOB_CORRELATION_ID": correlation_id})
    assert loud.code == 3 and "Traceback" not in loud.err, loud.err
    records = [json.loads(line) for line in loud.out.splitlines()]
    assert {r["correlation_id"] for r in records} == {correlation_id}
    assert [r["line"] for r in records if r["event"] == "run.output"] == ["a", "b"]
    kept = rj.run("logs", records[0]["run_id"])
    assert kept.code == 0 and kept.out == loud.out, kept.err
    quiet = rj.run("pct", "--quiet", env={"RUNJOB_CORRELATION_ID": correlation_id})
    assert quiet.code == 3 and [json.loads(line)["correlation_id"] for line in quiet.out.splitlines()] == [
        correlation_id
    ] * len(quiet.out.splitlines())
    assert [json.loads(line).get("line") for line in quiet.out.splitlines()].count("a") == 1


def test_a_closed_stdout_loses_nothing_of_the_kept_run(rj):
    """`runjob JOB | head -1`: once stdout fails the records it did not take are lost there,
    but the kept run (SPEC section 11) still gets every record, plain and escaped lines alike."""
    code = "for i in range(2000): print(f'line {i}' if i % 2 else f'quote \"{i}\"', flush=i % 100 == 0)"
    rj.write(f"[jobs.cut]\ncommand = {py(code)}\n")
    r, w = os.pipe()
    os.close(r)  # the reader is gone before the first record
    try:
        proc = subprocess.run([RUNJOB, "cut"], stdout=w, stderr=subprocess.PIPE, env=rj.env(), cwd=rj.dir)
    finally:
        os.close(w)
    assert b"Traceback" not in proc.stderr, proc.stderr
    (kept,) = (rj.state / "runs" / "cut").glob("*.jsonl")
    shown = rj.run("logs", kept.stem)
    assert shown.code == 0, shown.err
    records = [json.loads(line) for line in shown.out.splitlines()]
    lines = [r["line"] for r in records if r["event"] == "run.output"]
    assert lines == [f"line {i}" if i % 2 else f'quote "{i}"' for i in range(2000)]
    assert records[-1]["event"] == "run.end" and [r["seq"] for r in records] == list(range(len(records)))
