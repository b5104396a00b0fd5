"""JSON records (SPEC section 4) and the child's output in each mode."""

from __future__ import annotations

import json
import resource
import subprocess
import sys

from conftest import COMMON, PY, RUNJOB, TIMESTAMP, UUID4, py


def test_every_record_parses_and_carries_the_common_fields(rj):
    code = "import sys; print('out'); print('err', file=sys.stderr); sys.exit(2)"
    rj.write(f'[jobs.c]\ncommand = {py(code)}\nschedule = "*/5 * * * *"\nretry = {{ attempts = 2 }}\n')
    r = rj.run("c")
    records = r.records
    assert [rec["event"] for rec in records if rec["event"] != "run.output"] == [
        "run.start",
        "run.attempt",
        "run.attempt",
        "run.end",
    ]
    run_id = records[0]["run_id"]
    for rec in records:
        assert list(rec)[: len(COMMON)] == list(COMMON)
        assert TIMESTAMP.match(rec["timestamp"]) and UUID4.match(rec["run_id"])
        assert rec["run_id"] == run_id == rec["correlation_id"] and rec["job"] == "c"
        assert isinstance(rec["pid"], int) and rec["host"] and rec["level"] in ("info", "warning", "error")
    start = r.one("run.start")
    assert start["command"][0] == PY and start["params"] == {} and start["schedule"] == "*/5 * * * *"
    assert start["lock_key"] == "c" and start["timeout_s"] == 3600.0 and start["attempts_max"] == 2
    end = r.one("run.end")
    for key in ("status", "exit_code", "attempts", "started_at", "ended_at", "duration_s", "stderr_tail", "max_rss_kb"):
        assert key in end
    assert end["stderr_tail"] == "err\n" and end["max_rss_kb"] > 0  # the last attempt's stderr
    assert {o["stream"] for o in r.events("run.output")} == {"stdout", "stderr"}


def test_new_run_id_every_run(rj):
    rj.write('[jobs.t]\ncommand = ["true"]\n')
    assert rj.run("t").one("run.end")["run_id"] != rj.run("t").one("run.end")["run_id"]


def test_long_lines_are_cut_to_fit_a_16k_record_and_marked(rj):
    code = "import sys; sys.stdout.write('x' * 100000 + '\\nnext\\n' + 'y' * 70000)"
    rj.write(f"[jobs.l]\ncommand = {py(code)}\n")
    r = rj.run("l")
    out = r.events("run.output")
    assert [o.get("truncated") for o in out] == [True, None, True]
    assert out[0]["line"] == "x" * len(out[0]["line"]) and out[2]["line"] == "y" * len(out[2]["line"])
    assert len(out[0]["line"]) > 15000 and out[1]["line"] == "next"
    assert all(len(line.encode()) + 1 <= 16384 for line in r.out.splitlines())


def test_bad_utf8_is_replaced_not_fatal(rj):
    code = "import sys; sys.stdout.buffer.write(b'ok \\xff\\xfe end\\n'); sys.stderr.buffer.write(b'\\xc3(\\n')"
    rj.write(f"[jobs.u]\ncommand = {py(code)}\n")
    r = rj.run("u")
    assert r.code == 0
    lines = {o["stream"]: o["line"] for o in r.events("run.output")}
    assert lines["stdout"] == "ok \ufffd\ufffd end" and lines["stderr"] == "\ufffd("


def test_child_json_lines_stay_structured(rj):
    code = (
        "import json; print(json.dumps({'level': 'info', 'message': 'imported', 'rows': 3})); "
        "print('[1, 2]'); print('{not json')"
    )
    rj.write(f"[jobs.j]\ncommand = {py(code)}\n")
    out = rj.run("j").events("run.output")
    assert out[0]["data"] == {"level": "info", "message": "imported", "rows": 3} and "line" not in out[0]
    assert out[0]["message"] == "imported"
    assert out[1]["line"] == "[1, 2]" and out[2]["line"] == "{not json"


def test_passthrough_hands_output_through_untouched(rj):
    code = "import sys; sys.stdout.write('raw {\"a\": 1}\\n'); sys.stderr.write('oops\\n')"
    rj.write(f'[jobs.p]\ncommand = {py(code)}\noutput = "passthrough"\n')
    r = rj.run("p")
    lines = r.out.splitlines()
    assert 'raw {"a": 1}' in lines and r.err == "oops\n"
    records = [json.loads(line) for line in lines if line.startswith('{"timestamp"')]
    assert len(records) == len(lines) - 1 and not any(rec["event"] == "run.output" for rec in records)
    assert records[-1]["event"] == "run.end" and records[-1]["stderr_tail"] == "oops\n"


def test_discard_drops_output_but_keeps_the_stderr_tail(rj):
    code = "import sys; print('noise'); print('why it failed', file=sys.stderr); sys.exit(4)"
    rj.write(f'[jobs.d]\ncommand = {py(code)}\noutput = "discard"\n')
    r = rj.run("d")
    assert r.code == 4 and not r.events("run.output") and r.err == ""
    assert r.one("run.end")["stderr_tail"] == "why it failed\n"


def test_stderr_tail_is_the_last_4k(rj):
    code = "import sys; sys.stderr.write('a' * 10000 + 'END\\n')"
    rj.write(f'[jobs.t]\ncommand = {py(code)}\noutput = "discard"\n')
    tail = rj.run("t").one("run.end")["stderr_tail"]
    assert len(tail) == 4096 and tail.endswith("END\n")


def test_output_override_flag(rj):
    rj.write('[jobs.e]\ncommand = ["echo", "hi"]\n')
    r = rj.run("run", "e", "--output", "discard")
    assert not r.events("run.output") and r.one("run.end")["exit_code"] == 0
    assert rj.run("run", "e", "--output", "loud").code == 2


def test_log_file_templated_by_job_and_appended(rj):
    rj.write('[defaults]\nstate_dir = "state"\nlog_file = "logs/{job}.log"\n[jobs.e]\ncommand = ["echo", "hi"]\n')
    r1, r2 = rj.run("e"), rj.run("e")
    assert r1.out == r2.out == ""
    lines = (rj.dir / "logs" / "e.log").read_text().splitlines()
    assert len(lines) == 8 and all(json.loads(line)["job"] == "e" for line in lines)
    r3 = rj.run("run", "e", "--log-file", str(rj.dir / "other.log"))
    assert r3.out == "" and len((rj.dir / "other.log").read_text().splitlines()) == 4


def test_secrets_are_masked_in_records(rj):
    code = "import os, sys; print('using', os.environ['DB_PASSWORD']); print('pw=' + os.environ['DB_PASSWORD'], file=sys.stderr); sys.exit(1)"
    rj.write(f'[jobs.s]\ncommand = {py(code, "--password=hunter2-secret")}\nsecrets = ["DB_PASSWORD"]\n')
    r = rj.run("s", env={"DB_PASSWORD": "hunter2-secret"})
    assert r.code == 1
    assert "hunter2-secret" not in r.out
    assert r.one("run.start")["command"][-1] == "--password=***"
    assert r.one("run.end")["stderr_tail"] == "pw=***\n"
    assert [o["line"] for o in r.events("run.output")][0] == "using ***"


def test_memory_stays_bounded_with_endless_line_and_many_lines(rj):
    """runjob's peak RSS, measured in a fresh parent so only runjob and its child count."""
    huge = "import sys; w = sys.stdout.buffer.write; [w(b'z' * 1048576) for _ in range(80)]"
    many = "import sys; w = sys.stdout.buffer.write; [w(b'%075d\\n' % i * 1000) for i in range(300)]"
    rj.write(f"[jobs.huge]\ncommand = {py(huge)}\n[jobs.many]\ncommand = {py(many)}\n")
    measure = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    for name in ("huge", "many"):  # 80 MiB in one line; 300k lines of 76 bytes (22 MiB)
        rss_kb = int(subprocess.check_output([PY, "-c", measure, RUNJOB, name], env=rj.env(), cwd=rj.dir))
        assert rss_kb < 60_000, f"{name}: peak RSS {rss_kb} kB"


def test_records_are_identical_to_python_json_logger():
    """Our encoder writes exactly what python-json-logger's JsonFormatter writes."""
    import logging

    from pythonjsonlogger.json import JsonFormatter

    from runjob.records.logs import COMMON as FIELDS
    from runjob.records.logs import (
        JsonSink,
        Records,
        encode,
        encode_output,
        output_pieces,
        plain_output_parts,
        timestamp,
    )
    from runjob.records.output import is_plain

    formatter = JsonFormatter(list(FIELDS), json_ensure_ascii=False)

    def reference(fields: dict) -> str:
        extra = {k: v for k, v in fields.items() if k != "message"}
        record = logging.makeLogRecord({"msg": fields["message"], "args": None, **extra})
        return formatter.format(record)

    class Capture:
        def __init__(self):
            self.records = []

        def record(self, fields):
            self.records.append(fields)

    cap = Capture()
    recs = Records(cap, "job-ü", "4c6f7bd8-6a2e-4f0e-9b0e-3c1f0c1d2e3f", None)
    recs.emit("run.start", 'started \u00e9\u4e2d "q" \\ \n', command=["a", "b c"], params={"x": "1"}, timeout_s=1.5)
    recs.emit("run.end", "done", level="error", status="failure", exit_code=3, retry_in_s=None, data={"k": [1, True]})
    for fields in cap.records:
        assert encode(fields) == reference(fields)
    lines = ["plain", "tab\there", 'quote"s', "uni\u00e9\u2028", "ctl\x01\x1f", ""]
    ts = timestamp()
    lines.append("long " * 40)  # the message is a prefix of the line
    fast = encode_output(output_pieces(recs.common, "stderr", 2), lines, ts, 7).split("\n")
    assert fast.pop() == ""  # every record ends with a newline
    for seq, (line, got) in enumerate(zip(lines, fast, strict=True), 7):
        fields = {"timestamp": ts, "level": "info", "event": "run.output", "message": line[:80]}
        fields |= recs.common | {"seq": seq, "stream": "stderr", "line": line, "attempt": 2}
        assert got == reference(fields)
    plain = [b"plain words 123", b"", b"~!@#$%^&*()_+`-={}|[]:;'<>?,./ \x7f"]
    assert is_plain(b"\n".join(plain))
    assert not any(is_plain(b) for b in (b"tab\there", b'q"', b"b\\", b"\xc3\xa9", b'{"a": 1}', b"x\n{}", b"cr\r"))
    plain.append(b"long " * 40)
    raw = b"".join(plain_output_parts(output_pieces(recs.common, "stdout", 1), plain, ts, 0)).decode().split("\n")
    assert raw.pop() == ""
    for seq, (line, got) in enumerate(zip(plain, raw, strict=True)):
        text = line.decode()
        fields = {"timestamp": ts, "level": "info", "event": "run.output", "message": text[:80]}
        fields |= recs.common | {"seq": seq, "stream": "stdout", "line": text, "attempt": 1}
        assert got == reference(fields)
    assert JsonSink and sys
    assert resource
