"""The run's kept file (SPEC section 11): state_dir/runs/JOB/RUN_ID.jsonl holds every record
of the run as it was written, and only the newest `keep_runs` of a job stay."""

from __future__ import annotations

import os

from runjob.records.output_records import write_all

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

PIECE = 1 << 16  # a replay reads the file in pieces this big, never whole into memory


class KeptFile:
    def __init__(self, runs_dir: str, keep: int) -> None:
        self.runs_dir, self.keep = runs_dir, keep
        self.fd, self.path = -1, ""
        self.error = ""  # why it is no longer written, once a write failed

    def open(self, job: str, run_id: str) -> None:
        """Created on the run's first record, private, never through a symlink."""
        from runjob import safefs  # loaded already by lock.py on the run path

        directory = safefs.ensure_state_dir(os.path.dirname(self.runs_dir), "runs", job)
        self.path = os.path.join(directory, f"{run_id}.jsonl")
        self.fd = safefs.open_private(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND)

    def write(self, data: Any, write: Callable[..., None] = write_all, *args: Any) -> bool:
        """`write(fd, data, *args)`; False (and the file closed, no longer written) if it failed."""
        try:
            write(self.fd, data, *args)
        except OSError as e:  # a full disk: the run goes on
            os.close(self.fd)
            self.fd = -1
            self.error = f"runjob: cannot write the kept run {self.path}: {e.strerror}; no longer kept"
            return False
        return True

    def pieces(self) -> Any:
        """The file's bytes from its start, a piece at a time, read through our own fd (a
        concurrent prune may have unlinked its name)."""
        offset = 0
        while chunk := os.pread(self.fd, PIECE, offset):
            offset += len(chunk)
            yield chunk

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            prune(os.path.dirname(self.path), self.keep)


def prune(directory: str, keep: int) -> None:
    """Only the newest `keep` kept runs of a job stay (by modification time: a running one is new)."""
    try:
        kept = [e for e in os.scandir(directory) if e.name.endswith(".jsonl")]
        if len(kept) <= keep:  # the usual case at the end of a run: no stat of every kept file
            return
        entries = [(e.stat().st_mtime_ns, e.name) for e in kept]
    except OSError:
        return
    for _, name in sorted(entries)[: max(0, len(entries) - keep)]:
        try:
            os.unlink(os.path.join(directory, name))
        except OSError:
            pass  # a concurrent run pruned it first
