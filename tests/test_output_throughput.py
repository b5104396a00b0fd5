"""What makes JSON output fast (issue 12 point 4) never changes what is written: records
joined and written a batch at a time are the records, whole and in order; a line-length
check by search agrees with the lengths; a job's secrets searched for in a whole chunk
mask exactly what masking each line would."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from conftest import RUNJOB, py
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runjob.records.kept_file import Expander
from runjob.records.logs import JsonSink, Records, output_pieces, plain_output_parts
from runjob.records.output import has_longer, is_plain
from runjob.records.redact import Redactor

PLAIN = bytes(b for b in range(0x20, 0x7F) if b not in b'"\\')
RUN_ID = "4c6f7bd8-6a2e-4f0e-9b0e-3c1f0c1d2e3f"


def strict(line: bytes | str) -> dict:
    return json.loads(line, parse_constant=lambda c: 1 / 0)


@settings(max_examples=400)
@given(st.lists(st.integers(0, 60), max_size=12), st.integers(1, 40))
def test_has_longer_agrees_with_the_lengths_of_the_lines(lengths, limit):
    block = b"\n".join(b"x" * n for n in lengths)
    assert has_longer(block, limit) == any(n > limit for n in lengths)


plain_text = st.text(st.sampled_from([chr(b) for b in PLAIN]), max_size=30)


@settings(max_examples=300)
@given(st.lists(plain_text, min_size=1, max_size=6), st.lists(st.text(min_size=1, max_size=12), max_size=3))
def test_a_chunk_searched_once_for_secrets_masks_what_each_line_would(lines, secrets):
    """in_plain (plain blocks) and may_change (any text) may only say no when masking each
    line changes nothing."""
    redactor = Redactor(secrets)
    block = "\n".join(lines).encode()
    assert is_plain(block) or any(line.startswith("{") for line in lines)
    if not redactor.in_plain(block):
        assert [redactor.text(line) for line in lines] == lines
    if not redactor.may_change("\n".join(lines)):
        assert [redactor.text(line) for line in lines] == lines


@settings(max_examples=200)
@given(st.lists(st.text(max_size=20), min_size=1, max_size=6), st.lists(st.text(min_size=3, max_size=8), max_size=3))
def test_may_change_is_never_wrong_about_any_text(lines, secrets):
    redactor = Redactor(secrets)
    for secret in secrets[:1]:  # a secret inside a line, escaped or not, must be seen
        lines = [*lines, "a " + secret + " b", "c " + json.dumps(secret, ensure_ascii=True)[1:-1]]
    if not redactor.may_change("\n".join(lines)):
        assert [redactor.text(line) for line in lines] == lines


long_plain_line = st.integers(0, 9000).map(lambda n: (b"%d " % n + b"abc~" * n)[:n])


@settings(max_examples=40, suppress_health_check=list(HealthCheck))
@given(st.lists(st.lists(long_plain_line, min_size=1, max_size=40), min_size=1, max_size=5))
def test_records_written_in_batches_are_the_records_whole_and_in_order(tmp_path_factory, blocks):
    """Lines of any length up to most of a record: however many records a batch holds (one,
    for a line near the limit), the log gets exactly the records joined at once would give,
    and the kept file gives them back."""
    tmp = tmp_path_factory.mktemp("b")
    log, runs = tmp / "out.log", tmp / "state" / "runs"
    runs.parent.mkdir(mode=0o700)
    sink = JsonSink(str(log), keep=(str(runs), 5))
    records = Records(sink, "job", RUN_ID)
    records.emit("run.start", "started")
    expected = [log.read_bytes()]
    for i, lines in enumerate(blocks):
        seq = sink.seq
        sink.output_block(records.common, "stdout", lines, 1 + i % 2, b"\n".join(lines))
        written = log.read_bytes()
        pieces = output_pieces(records.common, "stdout", 1 + i % 2)
        ts = strict(written.splitlines()[-1])["timestamp"]
        expected.append(b"".join(plain_output_parts(pieces, lines, ts, seq)))
        assert written == b"".join(expected)
    sink.close()
    out = log.read_bytes().splitlines()
    assert all(len(line) < 16 * 1024 for line in out)
    assert [strict(line)["seq"] for line in out] == list(range(len(out)))
    assert [strict(line)["line"] for line in out[1:]] == [x.decode() for lines in blocks for x in lines]
    [kept] = runs.glob("*/*.jsonl")
    assert Expander().feed(kept.read_bytes()) == log.read_bytes()


def test_plain_lines_of_a_job_with_secrets_are_masked_and_the_rest_kept_as_printed(rj):
    """Many chunks of plain lines, a secret in some of them (alone, inside a line, one line
    of a multi-line secret, escaped in a line that is not plain): each is masked, in stdout
    and in the kept copy, and every other line comes out as printed, in order."""
    count = 60_000
    code = (
        "import sys\nw = sys.stdout.buffer.write\n"
        f"for i in range({count}):\n"
        "    w(b'line %06d plain words\\n' % i)\n"
        "    if i % 7919 == 0: w(b'token tok-en-41 in line %d\\n' % i)\n"
        "    if i % 9973 == 0: w(b'second-line-of-key\\n')\n"
        "    if i % 10007 == 0: w(b'escaped \\\\u0074ok-en-41 and a tab\\t%d\\n' % i)\n"
    )
    rj.write(
        f'[jobs.leaky]\ncommand = {py(code)}\nenv = {{ TOKEN = "tok-en-41", KEY = "first\\nsecond-line-of-key" }}\n'
        'secrets = ["TOKEN", "KEY"]\n'
    )
    res = rj.run("leaky")
    assert res.code == 0, res.err
    assert "tok-en-41" not in res.out and "second-line-of-key" not in res.out and "u0074ok" not in res.out
    lines = [r["line"] for r in res.records if r["event"] == "run.output"]
    expected = []
    for i in range(count):
        expected.append(f"line {i:06d} plain words")
        if i % 7919 == 0:
            expected.append(f"token *** in line {i}")
        if i % 9973 == 0:
            expected.append("***")
        if i % 10007 == 0:
            expected.append(f"escaped *** and a tab\t{i}")
    assert lines == expected
    assert [r["seq"] for r in res.records] == list(range(len(res.records)))
    [kept] = (rj.state / "runs" / "leaky").glob("*.jsonl")
    assert b"tok-en-41" not in kept.read_bytes() and b"second-line-of-key" not in kept.read_bytes()
    assert rj.run("logs", kept.stem).out == res.out


def test_a_chatty_job_through_a_pipe_gives_every_record_whole(rj, tmp_path: Path):
    """Several chunks' worth of records through a real pipe, read as they come: every line a
    whole strict record, seq in order, each printed line once."""
    count = 50_000
    code = (
        f"import sys\nw = sys.stdout.buffer.write\nfor i in range({count}): w(b'%d ' % i + b'y' * (i % 300) + b'\\n')\n"
    )
    rj.write(f"[jobs.chatty]\ncommand = {py(code)}\n")
    r, w = os.pipe()
    proc = subprocess.Popen([RUNJOB, "chatty"], stdout=w, stderr=subprocess.PIPE, env=rj.env(), cwd=rj.dir)
    os.close(w)
    got = bytearray()
    while chunk := os.read(r, 1 << 16):
        got += chunk
    os.close(r)
    assert proc.wait() == 0, proc.stderr.read() if proc.stderr else ""
    records = [strict(line) for line in bytes(got).split(b"\n") if line]
    assert [rec["seq"] for rec in records] == list(range(len(records)))
    assert [rec["line"] for rec in records if rec["event"] == "run.output"] == [
        f"{i} " + "y" * (i % 300) for i in range(count)
    ]


any_line = st.text(st.characters(blacklist_categories=("Cs",)), max_size=120) | st.sampled_from(
    ["é" * 81, "\t" * 90, '"' * 79, "\x1d\x1e", "a\u2028b", "ü" * 80 + "x"]
)


@settings(max_examples=60, suppress_health_check=list(HealthCheck))
@given(st.lists(st.lists(any_line, min_size=1, max_size=20), min_size=1, max_size=5))
def test_escaped_lines_are_written_as_their_records_and_kept_compactly(tmp_path_factory, blocks):
    """Lines that need escaping (quotes, tabs, control characters, any script): built from
    their JSON strings as bytes, each record is what encoding its fields gives; the kept
    file holds the JSON strings after a GS header and gives the records back byte for byte."""
    from runjob.records.logs import encode

    tmp = tmp_path_factory.mktemp("q")
    log, runs = tmp / "out.log", tmp / "state" / "runs"
    runs.parent.mkdir(mode=0o700)
    sink = JsonSink(str(log), keep=(str(runs), 5))
    records = Records(sink, "job-ü", RUN_ID)
    records.emit("run.start", "started")
    for i, lines in enumerate(blocks):
        sink.output(records.common, "stderr", lines, 1 + i % 2)
    sink.close()
    out = log.read_bytes().decode().split("\n")
    assert out.pop() == ""
    texts = [line for lines in blocks for line in lines]
    attempts = [1 + i % 2 for i, lines in enumerate(blocks) for _ in lines]
    for seq, (text, attempt, got) in enumerate(zip(texts, attempts, out[1:], strict=True), 1):
        fields = {"timestamp": strict(got)["timestamp"], "level": "info", "event": "run.output", "message": text[:80]}
        fields |= records.common | {"seq": seq, "stream": "stderr", "line": text, "attempt": attempt}
        assert got == encode(fields)
    [kept] = runs.glob("*/*.jsonl")
    data = kept.read_bytes()
    assert data.count(b"\n\x1d") == len(blocks) and len(data) < len(log.read_bytes())
    assert Expander().feed(data) == log.read_bytes()


def test_a_child_that_fills_its_pipe_gets_a_bigger_one_and_a_quiet_one_does_not(rj):
    """runjob grows a chatty child's pipe after its first full read (the child writes ahead
    while runjob builds records). The child's 200 KiB write returns only once runjob has read
    more than one full chunk, so the size it reads afterwards is the grown one: no timing."""
    report = (
        "import fcntl, sys\n"
        "if sys.argv[1] == 'chatty':\n    sys.stdout.buffer.write((b'x' * 75 + b'\\n') * 2800)\n"
        "    sys.stdout.buffer.flush()\n"
        "print('pipe', fcntl.fcntl(1, fcntl.F_GETPIPE_SZ), flush=True)\n"
    )
    rj.write(f"[jobs.chatty]\ncommand = {py(report, 'chatty')}\n[jobs.quiet]\ncommand = {py(report, 'quiet')}\n")
    sizes = {}
    for job in ("chatty", "quiet"):
        r = rj.run(job)
        assert r.code == 0, r.err
        (line,) = [o["line"] for o in r.events("run.output") if o["line"].startswith("pipe ")]
        sizes[job] = int(line.split()[1])
    limit = int(Path("/proc/sys/fs/pipe-max-size").read_text())
    assert sizes["quiet"] == 64 * 1024
    assert sizes["chatty"] == min(1 << 20, limit) > sizes["quiet"]
