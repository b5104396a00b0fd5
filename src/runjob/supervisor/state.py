"""A small state file per worker (state_dir/workers/NAME/state.json) that `status` reads,
and the instances' heartbeat files beside it. Written with safefs: never through a
symlink, mode 0600, replaced atomically so `status` never reads half a file."""

from __future__ import annotations

import json
import os
import time

from runjob import safefs
from runjob.errors import InternalError
from runjob.proc import procid
from runjob.records.encoding import timestamp

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from runjob.registry.config import Registry
    from runjob.supervisor.instance import Instance

WRITE_EVERY_S = 1.0  # RSS and progress in the file are at most this old while nothing else changes


def worker_dir(state_dir: str, name: str) -> str:
    return os.path.join(state_dir, "workers", name)


class StateFile:
    def __init__(self, state_dir: str, name: str) -> None:
        self.dir = safefs.ensure_state_dir(state_dir, "workers", name)
        self.path = os.path.join(self.dir, "state.json")
        self.name = name
        self.last: tuple[Any, ...] = ()
        self.written = 0.0
        self.started = procid.start_time(os.getpid())

    def leftovers(self) -> list[int]:
        """Process groups of instances that a SIGKILLed supervisor of this worker left behind.

        PR_SET_PDEATHSIG killed each leader, but what a leader started in its group may
        live on. A group whose leader is gone cannot have been reused (Linux never hands
        out a pid still in use as a process group id), so its members are ours to kill; a
        live leader counts only with the start time we recorded."""
        saved = _read(self.path)
        if not saved.get("running") or procid.alive(saved.get("supervisor_pid"), saved.get("supervisor_started")):
            return []
        groups = []
        for inst in saved.get("instances", []):
            pgid, started = inst.get("pid"), inst.get("leader_started")
            if not isinstance(pgid, int) or pgid <= 1:
                continue
            if procid.start_time(pgid) is None or procid.alive(pgid, started):
                groups.append(pgid)
        return groups

    def heartbeat_path(self, index: int) -> str:
        return os.path.join(self.dir, f"heartbeat.{index}")

    def heartbeat(self, index: int) -> str:
        """The instance's heartbeat file, created fresh (0600, no symlink followed); its path."""
        path = self.heartbeat_path(index)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        os.close(safefs.open_private(path, os.O_WRONLY | os.O_CREAT))
        return path

    def write(self, slots: list[Instance], running: bool = True) -> None:
        now = time.monotonic()
        key = (running, *((i.pid, i.restarts) for i in slots))
        if key == self.last and now - self.written < WRITE_EVERY_S:
            return
        self.last, self.written = key, now
        data = {
            "worker": self.name,
            "supervisor_pid": os.getpid(),
            "supervisor_started": self.started,
            "running": running,
            "updated_at": timestamp(),
            "instances": [_instance(i) for i in slots],
        }
        safefs.replace(self.path, json.dumps(data).encode(), keep_mode=False)


def _instance(inst: Instance) -> dict[str, Any]:
    return {
        "instance": inst.index,
        "pid": inst.pid or None,
        "started_at": inst.started_at if inst.pid else None,
        "leader_started": procid.start_time(inst.pid) if inst.pid else None,
        "restarts": inst.restarts,
        "rss_bytes": inst.rss if inst.pid else None,
        "last_progress_at": inst.progress_at if inst.pid else None,
    }


def worker_rows(registry: Registry) -> list[dict[str, Any]]:
    """`status` rows, one per worker: running or not, and each instance now."""
    return [_row(registry.state_dir, name, registry.workers[name]["instances"]) for name in registry.workers]


def _row(state_dir: str, name: str, wanted: int) -> dict[str, Any]:
    saved = _read(os.path.join(worker_dir(state_dir, name), "state.json"))
    running = bool(saved.get("running")) and procid.alive(saved.get("supervisor_pid"), saved.get("supervisor_started"))
    now = time.time()
    instances = []
    for inst in saved.get("instances", []) if running else []:
        started, progress = inst.get("started_at"), inst.get("last_progress_at")
        instances.append(
            {
                "instance": inst.get("instance"),
                "pid": inst.get("pid"),
                "restarts": inst.get("restarts"),
                "uptime_s": round(now - started, 1) if started else None,
                "rss_bytes": inst.get("rss_bytes"),
                "last_progress_at": timestamp(progress) if progress else None,
            }
        )
    return {
        "worker": name,
        "running": running,
        "supervisor_pid": saved.get("supervisor_pid") if running else None,
        "instances_wanted": wanted,
        "instances": instances,
    }


def _read(path: str) -> dict[str, Any]:
    try:
        fd = safefs.open_private(path, os.O_RDONLY)
    except (OSError, InternalError):
        return {}
    with os.fdopen(fd, "rb") as f:
        try:
            data = json.loads(f.read(1 << 20))
        except ValueError:
            return {}
    return data if isinstance(data, dict) else {}


def print_workers(rows: list[dict[str, Any]]) -> None:
    """The human form: one line per worker, one per instance."""
    for row in rows:
        state = f"supervised by pid {row['supervisor_pid']}" if row["running"] else "not running"
        print(f"worker {row['worker']}: {state}, {row['instances_wanted']} instance(s) wanted")
        for inst in row["instances"]:
            if not inst["pid"]:
                print(f"  #{inst['instance']} waiting to restart (restarts {inst['restarts']})")
                continue
            rss = f"{inst['rss_bytes'] / 1048576:.1f} MiB" if inst["rss_bytes"] is not None else "-"
            print(
                f"  #{inst['instance']} pid {inst['pid']} up {inst['uptime_s'] or 0:g}s "
                f"restarts {inst['restarts']} rss {rss} last progress {inst['last_progress_at'] or '-'}"
            )
