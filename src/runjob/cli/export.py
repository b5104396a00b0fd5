"""`runjob export crontab|systemd|kubernetes [--out DIR]`."""

from __future__ import annotations

import os
import shutil
import sys

from runjob import safefs
from runjob.errors import InternalError, UsageError
from runjob.registry import loader

FORMATS = ("crontab", "systemd", "kubernetes")


def export(config_path: str | None, fmt: str, out_dir: str | None, image: str, namespace: str | None) -> int:
    if fmt not in FORMATS:
        raise UsageError(f'export format must be one of {", ".join(FORMATS)}, got "{fmt}"')
    registry = loader.load(config_path, check_schedules=True)
    runjob = shutil.which("runjob") or os.path.abspath(sys.argv[0])
    if fmt == "crontab":
        from runjob.export import crontab

        text, notes = crontab.render(registry, runjob)
        files = {"runjob.crontab": text}
    elif fmt == "systemd":
        from runjob.export import systemd

        files, notes = systemd.render(registry, runjob)
    else:
        from runjob.export import kubernetes

        files, notes = kubernetes.render(registry, image, namespace)
    if registry.workers and fmt != "crontab":
        from runjob.supervisor import export as workers

        files |= (
            workers.systemd_units(registry, runjob)
            if fmt == "systemd"
            else workers.kubernetes_docs(registry, image, namespace)
        )
    for note in notes:
        print(f"runjob: note: {note}", file=sys.stderr)
    if out_dir is None:
        _print(files, fmt)
    else:
        _write(files, out_dir)
    return 0


def _print(files: dict[str, str], fmt: str) -> None:
    if fmt == "crontab":
        sys.stdout.write(next(iter(files.values())))
    elif fmt == "kubernetes":
        sys.stdout.write("---\n".join(files.values()))
    else:
        sys.stdout.write("\n".join(f"# {name}\n{text}" for name, text in files.items()))


def _write(files: dict[str, str], out_dir: str) -> None:
    try:
        os.makedirs(out_dir, exist_ok=True)
        for name, text in files.items():
            safefs.replace(os.path.join(out_dir, name), text.encode(), mode=0o640)
    except OSError as e:
        raise InternalError(f"cannot write to {out_dir}: {e.strerror}") from None
    for name in files:
        print(os.path.join(out_dir, name))
