"""Lock keys: a `lock_key` template resolved with a run's params, checked, and the file it names.

The one place a key is made: the run's plan, `validate` (each instance's key), the watchdog
(which locks an instance holds) and the Kubernetes export (CronJobs sharing a key) all
resolve it here, so they can never disagree about what key a run takes. No regex: this
runs on every run.
"""

from __future__ import annotations

import os

from runjob.registry import schema
from runjob.registry.templating import substitute

_LOCK_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-"  # schema.LOCK_KEY
MAX_LOCK_KEY = 200  # a lock key names a file: stay well inside NAME_MAX (255)


def problem(key: str) -> str | None:
    """Why `key` cannot name a lock file, or None."""
    if not key or not key[0].isalnum() or not key.isascii() or ".." in key or key.strip(_LOCK_CHARS):
        return f'bad lock key "{key}" (must match {schema.LOCK_KEY}, no "..")'
    if len(key) > MAX_LOCK_KEY:
        return f"lock key longer than {MAX_LOCK_KEY} characters"
    return None


def resolve(template: str, job: str, params: dict[str, str]) -> str:
    """The key `template` gives for job `job` run with `params` ({job} is the job's name).
    KeyError for a placeholder no param sets, ValueError for a bad template."""
    return substitute(template, params | {"job": job})


def lock_file(state_dir: str, key: str) -> str:
    """The flock file of `key` (checked by `problem` first: a key is one file name)."""
    return os.path.join(state_dir, "locks", key + ".lock")
