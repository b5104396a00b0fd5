"""Running a pipeline (SPEC 8): `runjob NAME` for a `[pipelines.NAME]`, and `runjob resume ID`.

Stages run in order; the jobs of a stage run at once, each as a normal `runjob JOB k=v`
process (its own run id, lock, timeout, retries, owners and records), with the pipeline
run id as RUNJOB_CORRELATION_ID and its own run id handed over as RUNJOB_CLAIM_RUN_ID, so
the pipeline finds the job's history row. A stage with a job that did not succeed stops the
pipeline; the exit code is the first such job's (in stage order). A job skipped because its
lock was busy did not succeed either: resume runs it. The pipeline holds its own lock
(`lock_key`, default its name; busy: a `lock.busy` record, exit 0, as on_busy = "skip").
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

from runjob import safefs
from runjob.errors import EXIT_BUSY, EXIT_TIMEOUT, UsageError
from runjob.locks import lock
from runjob.pipeline.store import Store
from runjob.proc import procid
from runjob.records.logs import JsonSink, Records, new_run_id
from runjob.registry import loader, lock_keys
from runjob.run import plan

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from runjob.registry.config import Pipeline, Registry

SLICE_S = 0.05  # how often a waiting pipeline looks at its deadline and at signals
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def pipeline_params(registry: Registry, name: str, words: list[str]) -> dict[str, str]:
    """The params a run of pipeline `name` passes to its jobs: its own, overridden by `words`."""
    pipeline = registry.pipelines[name]
    return pipeline.pass_params | _overrides(registry, pipeline, plan.parse_params(words))


def run_pipeline(registry: Registry, name: str, words: list[str]) -> int:
    params = pipeline_params(registry, name, words)
    return Execution(registry, registry.pipelines[name], params, new_run_id(), set()).run()


def resume(config_path: str | None, given_id: str) -> int:
    """Run a pipeline run again from where it stopped: every job that has not succeeded in it."""
    registry = loader.load(config_path)
    store = Store(registry.state_dir)
    try:
        found = store.find(given_id)
        done = store.succeeded(found["pipeline_run_id"])
    finally:
        store.close()
    if found["pipeline"] not in registry.pipelines:
        raise UsageError(
            f'pipeline run {found["pipeline_run_id"]} is of "{found["pipeline"]}", which {registry.path} no longer has'
        )
    pipeline = registry.pipelines[found["pipeline"]]
    return Execution(registry, pipeline, found["params"], found["pipeline_run_id"], done).run()


def _overrides(registry: Registry, pipeline: Pipeline, given: dict[str, str]) -> dict[str, str]:
    """`runjob PIPELINE k=v`: a value for a param some job of the pipeline declares."""
    import re

    takers = [registry.jobs[job] for stage in pipeline.stages for job in stage]
    for name, value in given.items():
        if not any(name in job.params for job in takers):
            raise UsageError(f'pipeline {pipeline.name}: no job of it declares the param "{name}"')
        for job in takers:  # checked before anything runs, not by the first job that gets it
            pattern = job.params.get(name, {}).get("pattern")
            if isinstance(pattern, str) and not re.fullmatch(pattern, value):
                raise UsageError(f'param {name}="{value}" does not match the pattern {pattern} of job {job.name}')
    return given


class Execution:
    """One pass over a pipeline's stages (a first run, or a resume of the same run id)."""

    def __init__(self, registry: Registry, pipeline: Pipeline, params: dict[str, str], run_id: str, done: set[str]):
        self.registry, self.pipeline, self.params, self.run_id, self.done = registry, pipeline, params, run_id, done
        self.records = Records(JsonSink(), pipeline.name, run_id, os.environ.get("RUNJOB_CORRELATION_ID"))
        self.records.common |= {"pipeline": pipeline.name, "pipeline_run_id": run_id}
        timeout = pipeline.pipeline_timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.signum = 0
        self.timed_out = False

    def run(self) -> int:
        held = self._lock()
        if held is None:
            return 0
        previous = {s: signal.signal(s, self._signalled) for s in STOP_SIGNALS}
        store = Store(self.registry.state_dir)
        try:
            store.begin(
                self.run_id,
                self.pipeline.name,
                self.params,
                self.records.common["correlation_id"],
                self.records.common["host"],
            )
            return self._stages(store)
        finally:
            store.close()
            for s, handler in previous.items():
                signal.signal(s, handler)
            held.release()

    def _signalled(self, signum: int, frame: object) -> None:
        self.signum = signum

    def _lock(self) -> lock.FileLock | None:
        locks_dir = os.path.join(self.registry.state_dir, "locks")
        safefs.ensure_dir(self.registry.state_dir, top=True)
        safefs.ensure_dir(locks_dir)
        path = lock_keys.lock_file(self.registry.state_dir, self.pipeline.lock_key)
        me = {
            "pid": os.getpid(),
            "pid_start": procid.start_time(os.getpid()),
            "run_id": self.run_id,
            "job": self.pipeline.name,
            "host": self.records.common["host"],
        }
        held = lock.try_acquire(path, me)
        if held is None:
            holder = lock.read_holder(path)
            self.records.emit(
                "lock.busy",
                f"pipeline {self.pipeline.name} is running already; not starting it",
                lock_key=self.pipeline.lock_key,
                holder_pid=holder.get("pid"),
                holder_run_id=holder.get("run_id"),
                on_busy="skip",
            )
        return held

    def _stages(self, store: Store) -> int:
        self.records.emit(
            "pipeline.start",
            f"pipeline {self.pipeline.name} started" + (" (resumed)" if self.done else ""),
            stages=self.pipeline.stages,
            params=self.params,
            resumed=bool(self.done),
            already_succeeded=sorted(self.done),
        )
        if not self.pipeline.enabled:  # asked for by name: run it, but say that it is switched off
            self.records.emit(
                "pipeline.disabled",
                f"pipeline {self.pipeline.name} has enabled = false: it is never "
                "due, run only because it was asked for by name",
                level="warning",
            )
        failed: list[dict[str, Any]] = []
        for number, stage in enumerate(self.pipeline.stages, 1):
            todo = [job for job in stage if job not in self.done]
            results = self._stage(store, number, todo) if todo else []
            failed = [r for r in results if r["status"] != "success"]
            status = "failure" if failed else ("success" if todo else "done")
            self.records.emit(
                "pipeline.stage",
                f"stage {number} of {self.pipeline.name}: {status}",
                level="error" if failed else "info",
                stage=number,
                jobs=stage,
                ran=todo,
                status=status,
                runs=results,
            )
            if failed or self.signum:
                break
        return self._end(store, failed)

    def _stage(self, store: Store, number: int, todo: list[str]) -> list[dict[str, Any]]:
        started = [self._start(job) for job in todo]
        for job, run_id, _ in started:
            store.job(self.run_id, number, job, run_id, "running", None)
        self._wait([proc for _, _, proc in started])
        results = []
        for job, run_id, proc in started:
            code = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
            status = store.job_status(run_id) or ("success" if code == 0 else "failure")
            status = "failure" if status == "running" else status  # its runjob died before it wrote the end
            store.job(self.run_id, number, job, run_id, status, code)
            results.append({"job": job, "run_id": run_id, "status": status, "exit_code": code})
        return results

    def _start(self, job: str) -> tuple[str, str, subprocess.Popen[bytes]]:
        from runjob.proc.executable import runjob_argv

        run_id = new_run_id()
        argv = [
            *runjob_argv(),
            "--config",
            os.path.abspath(self.registry.path),
            *plan.job_words(self.registry, job, self.params),
        ]
        env = dict(os.environ, RUNJOB_CORRELATION_ID=self.run_id, RUNJOB_CLAIM_RUN_ID=run_id)
        return job, run_id, subprocess.Popen(argv, stdin=subprocess.DEVNULL, env=env)

    def _wait(self, procs: list[subprocess.Popen[bytes]]) -> None:
        """Until every job of the stage has ended; past the deadline or on a signal, each running
        job's runjob is sent SIGTERM (it stops its child's group and writes its run.end)."""
        stopping = False
        while any(p.poll() is None for p in procs):
            if not stopping and (self.signum or (self.deadline is not None and time.monotonic() >= self.deadline)):
                self.timed_out = not self.signum
                stopping = True
                for p in procs:
                    if p.poll() is None:
                        p.send_signal(self.signum or signal.SIGTERM)
            try:
                next(p for p in procs if p.poll() is None).wait(SLICE_S)
            except (subprocess.TimeoutExpired, StopIteration):
                pass

    def _end(self, store: Store, failed: list[dict[str, Any]]) -> int:
        code = EXIT_TIMEOUT if self.timed_out else (128 + self.signum if self.signum else 0)
        if not code and failed:  # a job skipped on a busy lock exits 0 but did not succeed: "busy"
            code = failed[0]["exit_code"] or EXIT_BUSY
        status = "timeout" if self.timed_out else "killed" if self.signum else "failure" if failed else "success"
        names = [r["job"] for r in failed]
        store.end(self.run_id, status, code, names, self.registry.history_keep)
        hint = f"runjob resume {self.run_id}" if status != "success" else None
        what = f"failed in {', '.join(names)}" if names else {"success": "succeeded"}.get(status, status)
        record = self.records.emit(
            "pipeline.end",
            f"pipeline {self.pipeline.name} {what}" + (f"; {hint}" if hint else ""),
            level="info" if status == "success" else "error",
            status=status,
            exit_code=code,
            failed_jobs=names,
            resume=hint,
        )
        if status != "success" and any(self.pipeline.owners.values()):
            from runjob.ops import notify

            notify.finish(notify.start(self.registry, self.pipeline, f"pipeline.{status}", record), self.records)
        return code
