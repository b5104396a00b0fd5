"""`runjob report --html FILE [--since D] [--job NAME]`: one self-contained HTML page
(inline CSS, SVG and script, a CSP that allows no network) rendered with Jinja2."""

from __future__ import annotations

import os
import sys
import time

from runjob import safefs
from runjob.errors import UsageError
from runjob.registry import config, loader
from runjob.store import history
from runjob.views import model

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

STATUSES = ("success", "failure", "timeout", "killed", "transient", "running", "crashed", "skipped")
DEFAULT_SINCE = "1d"
REFRESH_S = 5.0


def since_seconds(text: str | None) -> float | None:
    """--since as seconds; "" or "all" means the whole history."""
    if text in (None, "", "all"):
        return None
    from runjob.durations import flag

    return flag(text, "--since")


def load(state_dir: str, job: str | None, since_s: float | None, now: float) -> list[dict[str, Any]]:
    """History rows (a dead `running` run shown as crashed), oldest first."""
    if not history.exists(state_dir):
        return []
    db = history.connect(state_dir)
    try:
        rows = history.query(db, job, since=None if since_s is None else now - since_s, limit=-1)
    finally:
        db.close()
    host = os.uname().nodename
    return [history.row_dict(row, host) for row in reversed(rows)]


def page(registry: config.Registry, job: str | None, since: str | None, live: bool = False) -> str:
    """The page for `registry`'s history: the report, or (`live`) the dashboard's view."""
    if job is not None:
        registry.job(job)  # an unknown job is a usage error
    since_s = since_seconds(since)
    now = time.time()
    data = model.build(load(registry.state_dir, job, since_s, now), now)
    data["job"] = job
    return render(data, live)


def render(data: dict[str, Any], live: bool = False) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(os.path.dirname(__file__)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    template = env.get_template("report.html.j2")
    return template.render(m=data, live=live, statuses=STATUSES, refresh_ms=int(REFRESH_S * 1000))


def write_report(config_path: str | None, out: str, since: str | None, job: str | None) -> int:
    registry = loader.load(config_path)
    html = page(registry, job, since)
    try:
        safefs.replace(out, html.encode(), mode=0o640)
    except OSError as e:
        raise UsageError(f"--html {out}: {e.strerror}") from None
    sys.stderr.write(f"runjob: wrote the report to {out}\n")
    return 0
