"""Nothing a child prints breaks runjob or its records; the log file is one a reader can
trust (SPEC section 12; the safety issue, points 3 and 9)."""

from __future__ import annotations

import json
import os
import subprocess

from conftest import HOLD, finish, py, wait_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runjob.records.logs import JsonSink


def strict(line: str) -> dict:
    def refuse(name: str) -> None:
        raise ValueError(f"not JSON: {name}")

    return json.loads(line, parse_constant=refuse)


def lines_of(text: str) -> list[dict]:
    return [strict(line) for line in text.split("\n") if line]


def test_hostile_json_lines_never_stop_the_run(rj):
    deep = '{"a": ' + "[" * 5000 + "]" * 5000 + "}"
    code = (
        "import sys\nprint(r'{\"msg\": \"\\ud800\"}')\nprint(sys.argv[1])\nprint('[' * 100000)\n"
        'print(\'{"n": 1e999, "m": NaN, "i": -Infinity, "ok": 2.5}\')\nprint(\'after\')\nsys.exit(3)'
    )
    rj.write(f"[jobs.h]\ncommand = {py(code, deep.replace('{', '{{').replace('}', '}}'))}\n")
    r = rj.run("h")
    assert r.code == 3 and "Traceback" not in r.err
    records = lines_of(r.out)  # strict JSON, every line
    out = [o for o in records if o["event"] == "run.output"]
    assert out[0]["message"] == "\ufffd" and out[0]["data"] == {"msg": "\ufffd"}
    assert out[1]["line"] == deep and "data" not in out[1]  # too deep to keep structured: a plain line
    assert out[2]["truncated"] is True and set(out[2]["line"]) == {"["}
    assert out[3]["data"] == {"n": "1e999", "m": "NaN", "i": "-Infinity", "ok": 2.5}
    assert out[4]["line"] == "after"
    assert records[-1]["event"] == "run.end" and records[-1]["exit_code"] == 3


def test_a_record_with_nan_or_a_lone_surrogate_is_written_as_strict_json(tmp_path):
    path = tmp_path / "records.log"
    sink = JsonSink(str(path))
    sink.record({"timestamp": "t", "event": "run.end", "duration_s": float("nan"), "x": [float("inf")], "s": "\ud800"})
    sink.close()
    (rec,) = lines_of(path.read_text())
    assert rec == {"timestamp": "t", "event": "run.end", "duration_s": "nan", "x": ["inf"], "s": "\ufffd"}


def test_a_fifo_as_log_file_is_refused_not_waited_on(rj):
    os.mkfifo(rj.dir / "fifo")
    rj.write('[jobs.f]\ncommand = ["true"]\nlog_file = "fifo"\n')
    r = rj.run("f", timeout=30)
    assert r.code == 125 and "not a regular file" in r.err and "fifo" in r.err and "Traceback" not in r.err
    r = rj.run("run", "f", "--log-file", str(rj.dir / "fifo"), timeout=30)
    assert r.code == 125 and "not a regular file" in r.err


def test_a_symlinked_log_file_is_refused(rj):
    (rj.dir / "target").write_text("keep\n")
    os.symlink(rj.dir / "target", rj.dir / "link.log")
    rj.write('[jobs.f]\ncommand = ["true"]\nlog_file = "link.log"\n')
    r = rj.run("f")
    assert r.code == 125 and "link.log" in r.err and (rj.dir / "target").read_text() == "keep\n"


def test_a_new_log_file_is_not_world_readable(rj):
    rj.write('[jobs.f]\ncommand = ["true"]\nlog_file = "new.log"\n')
    assert rj.run("f").code == 0
    assert (rj.dir / "new.log").stat().st_mode & 0o777 == 0o640


def test_a_torn_record_is_never_glued_to_the_next_runs(rj):
    (rj.dir / "runs.log").write_bytes(b'{"event": "run.start"}\n{"timestamp": "2026-12-01T00:00:00.000Z", "lev')
    rj.write(f'[jobs.t]\ncommand = {py("print(1)")}\nlog_file = "runs.log"\n')
    assert rj.run("t").code == 0
    lines = (rj.dir / "runs.log").read_text().split("\n")
    assert lines[1] == '{"timestamp": "2026-12-01T00:00:00.000Z", "lev'  # the torn one, alone on its line
    assert [strict(line)["event"] for line in lines[2:] if line] == [
        "run.start",
        "run.output",
        "run.attempt",
        "run.end",
    ]


def _held_run(rj, name: str) -> tuple[subprocess.Popen[bytes], os.PathLike]:
    started, release = rj.dir / "started", rj.dir / "release"
    code = HOLD + "print('after release', flush=True)\n"
    rj.write(f'[jobs.{name}]\ncommand = {py(code, str(started), str(release))}\nlog_file = "job.log"\n')
    proc = rj.popen(name)
    assert wait_for(started.exists)
    return proc, release


def test_logrotate_move_and_create_gets_the_rest_of_the_run(rj):
    proc, release = _held_run(rj, "rot")
    os.rename(rj.dir / "job.log", rj.dir / "job.log.1")
    (rj.dir / "job.log").touch(mode=0o640)
    release.write_text("go")
    assert finish(proc).code == 0
    old = [o["event"] for o in lines_of((rj.dir / "job.log.1").read_text())]
    new = [o["event"] for o in lines_of((rj.dir / "job.log").read_text())]
    assert old[0] == "run.start" and new[-2:] == ["run.attempt", "run.end"]


def test_a_deleted_log_file_is_created_again(rj):
    proc, release = _held_run(rj, "del")
    os.unlink(rj.dir / "job.log")
    release.write_text("go")
    assert finish(proc).code == 0
    assert [o["event"] for o in lines_of((rj.dir / "job.log").read_text())][-2:] == ["run.attempt", "run.end"]


def test_stderr_patterns_match_per_line_whatever_the_chunking(rj):
    code = "import os; os.write(2, b'connecting\\nDeadlock found when trying to get lock\\n'); raise SystemExit(1)"
    rj.write(
        f'[jobs.d]\ncommand = {py(code)}\ntransient = {{ stderr_patterns = ["^Deadlock found$|^Deadlock found when"] }}\n'
    )
    assert rj.run("d").one("run.end")["status"] == "transient"


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=3000),
            st.sampled_from(
                [
                    b"\n",
                    b"\r",
                    b"{",
                    b'{"a": ',
                    b"\x01" * 3000,
                    b"\xe9" * 2000,
                    b"\\u0041",
                    b"]}",
                    b"tok-",
                    b"secret",
                    b"tok-secret",
                    b"tok-\\u0073ecret",
                ]
            ),
        ),
        max_size=40,
    ),
    st.sampled_from([1024, 4096, 16384]),
)
def test_any_output_gives_strict_records_within_the_limit(tmp_path, monkeypatch, chunks, limit):
    from runjob.records.logs import Records
    from runjob.records.output import StreamHandler

    monkeypatch.setenv("RUNJOB_RECORD_MAX", str(limit))
    path = tmp_path / f"out-{limit}-{len(chunks)}.log"
    path.unlink(missing_ok=True)
    sink = JsonSink(str(path))
    records = Records(sink, "p", "4c6f7bd8-6a2e-4f0e-9b0e-3c1f0c1d2e3f", None, ["tok-secret"])
    handlers = [StreamHandler(s, "json", sink, records, 1, ["tok-secret"]) for s in ("stdout", "stderr")]
    for i, chunk in enumerate(chunks):
        handlers[i % 2].feed(chunk)
    for h in handlers:
        h.finish()
    records.emit("run.end", "end", stderr_tail=handlers[1].tail_text(), duration_s=float("nan"))
    sink.close()
    raw = path.read_bytes().split(b"\n")
    assert raw[-1] == b""
    got = [strict(line.decode()) for line in raw[:-1]]
    assert all(len(line) + 1 <= limit for line in raw[:-1])
    assert [r["seq"] for r in got] == list(range(len(got))) and got[-1]["event"] == "run.end"
    shown = json.dumps(got, ensure_ascii=False)
    assert "tok-secret" not in shown and "tok-\\\\u0073ecret" not in shown  # masked before any cut, in any record
