"""Replacing a file so that readers see the old content or the new, never a part of it."""

from __future__ import annotations

import os


def replace(path: str, data: bytes, durable: bool = False) -> None:
    """Write `data` to a temp file beside `path` and rename it over `path`.

    An existing file's permissions are kept. `durable` fsyncs the data before the rename
    (for jobs.toml, which a crash must never leave empty). The temp file is removed if
    anything fails.
    """
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        try:
            os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        except FileNotFoundError:
            pass
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
