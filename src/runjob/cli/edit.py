"""`runjob init` and `runjob add`: create or extend jobs.toml without ever corrupting it.

The new text is validated as a whole before it is written, and written to a temp file
that replaces the old one (rename), so a reader sees the old file or the new one. The
temp file is created with the file's own mode (0640 for a new one), so a 0600 registry is
never exposed. A symlinked jobs.toml is refused (exit 125): replacing the link would leave
a copy owned by whoever ran `add` (root) where the link was, and writing through it would
let whoever controls the link choose the file root writes; `--config TARGET` edits the
target itself. `add`
appends a `[jobs.NAME]` table made with tomli-w to the existing text, so the file's
comments and layout are kept.
"""

from __future__ import annotations

import os
import shlex

from runjob import safefs
from runjob.errors import ConfigError, InternalError, UsageError
from runjob.registry import loader, validate

STARTER = """\
# runjob registry. Reference: `runjob schema`; check it with `runjob validate`.
#
# Every job runs as `runjob NAME [param=value ...]`, e.g. from crontab:
#   */5 * * * * runjob hello
# or from one crontab line for all scheduled jobs:  * * * * * runjob tick
#
# Relative paths are relative to this file.

"""


def init(config_path: str | None, force: bool) -> int:
    path = config_path or "jobs.toml"
    if os.path.exists(path) and not force:
        raise UsageError(f"{path} exists; use --force to overwrite it")
    import tomli_w

    body = tomli_w.dumps(
        {
            "defaults": {"timeout": "1h", "kill_grace": "10s", "on_busy": "skip", "state_dir": ".runjob-state"},
            "owners": {"ops": {"command": ["logger", "-t", "runjob", "-p", "user.err"]}},
            "jobs": {
                "hello": {
                    "description": "Say hello",
                    "command": ["echo", "hello from runjob"],
                    "schedule": "*/5 * * * *",
                    "owners": {"responsible": "ops"},
                    "idempotency": "Safe to re-run: it only prints.",
                }
            },
        }
    )
    _write(path, STARTER + body)
    print(f"wrote {path}")
    return 0


def add(
    config_path: str | None,
    name: str,
    command: str,
    schedule: str | None,
    timeout: str | None,
    lock_key: str | None,
    description: str | None,
) -> int:
    import tomli_w

    path = loader.find_config(config_path) if config_path or os.path.exists("jobs.toml") else "jobs.toml"
    old = _read(path)
    if old:
        existing = validate.parse_string(old, path)
        if name in existing.jobs:
            raise UsageError(f'job "{name}" already exists in {path}')
    try:
        argv = shlex.split(command)
    except ValueError as e:
        raise UsageError(f"--command: {e}") from None
    table = {
        "command": argv,
        "description": description,
        "schedule": schedule,
        "timeout": timeout,
        "lock_key": lock_key,
    }
    new = tomli_w.dumps({"jobs": {name: {k: v for k, v in table.items() if v is not None}}})
    text = (old.rstrip("\n") + "\n\n" if old else STARTER) + new
    try:
        validate.parse_string(text, path)
    except ConfigError as e:
        raise UsageError(f"not added, the result would be invalid: {'; '.join(e.errors)}") from None
    _write(path, text)
    print(f'added job "{name}" to {path}')
    return 0


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def _write(path: str, text: str) -> None:
    validate.parse_string(text, path)  # never write a registry that does not load
    if os.path.islink(path):
        raise InternalError(
            f"{path} is a symlink (to {os.path.realpath(path)}); runjob does not replace or write "
            "through it: run `runjob --config REAL_FILE add ...`"
        )
    safefs.replace(path, text.encode("utf-8"), mode=0o640, durable=True)
