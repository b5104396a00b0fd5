"""Human output on a terminal, through rich. Never imported off a terminal."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

console = Console(highlight=False, soft_wrap=True)
STATUS_STYLE = {"success": "green", "transient": "yellow", "failure": "red", "timeout": "red", "killed": "red"}


def say(markup: str) -> None:
    console.print(markup)


def zone_name() -> str:
    """The host zone's name, for a table's header: every time in a table is in this one zone."""
    from runjob.triggers.cron import zone

    tz = zone(None)
    return str(getattr(tz, "key", None) or tz)


def _when(value: str | None) -> str:
    """An RFC 3339 time (UTC or any offset) as the host's local wall time, to the second."""
    if not value:
        return "-"
    from datetime import datetime

    from runjob.triggers.cron import zone

    return datetime.fromisoformat(value).astimezone(zone(None)).strftime("%Y-%m-%d %H:%M:%S")


DURATIONS = frozenset(
    {
        "timeout",
        "kill_grace",
        "wait",
        "delay",
        "max_delay",
        "max_age",
        "catch_up",
        "lock_ttl",
        "min",
        "max",
        "timeout_s",
        "kill_grace_s",
        "wait_s",
    }
)


def plain(value: object, key: str = "") -> str:
    """A value as a person reads it: no Python reprs (no quotes, brackets, None or True),
    durations as durations, a nested table as `name (k=v, ...)` without its empty keys."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key in DURATIONS and isinstance(value, (int, float)):
        return _secs(value)
    if isinstance(value, dict):
        items = [(k, v) for k, v in value.items() if v not in (None, "", [], {})]
        return ", ".join(f"{k} ({plain(v)})" if isinstance(v, dict) else f"{k}={plain(v, k)}" for k, v in items) or "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(plain(v, key) for v in value) or "-"
    return str(value)


def job_table(rows: list[dict[str, Any]]) -> None:
    table = Table(
        "job", "schedule", f"next ({zone_name()})", "lock key", "timeout", "owners", box=None, header_style="bold"
    )
    for row in rows:
        owners = ", ".join(f"{k}={v}" for k, v in row["owners"].items() if v)
        nxt = _when(row["next"][0])[:16] if row["next"] else _never(row)
        table.add_row(row["name"], row["schedule"] or "-", nxt, row["lock_key"], _secs(row["timeout_s"]), owners)
    console.print(table)


def job_detail(job: dict[str, Any]) -> None:
    table = Table(show_header=False, box=None)
    for key, value in job.items():
        if value not in (None, "", [], {}):
            shown = _argv_text(value) if key in ("argv", "command") and isinstance(value, list) else plain(value, key)
            if key == "next" and isinstance(value, list):
                shown = ", ".join(_when(t) for t in value) + f" ({zone_name()})"
            table.add_row(Text(key, style="bold"), Text(shown))
    console.print(table)


def show_plan(plan: dict[str, Any]) -> None:
    console.print(f"[bold]dry run[/bold] of [cyan]{plan['job']}[/cyan]: nothing is locked or run")
    job_detail({k: v for k, v in plan.items() if k not in ("dry_run", "job")})
    if plan["executable_problem"]:
        console.print(f"[red]{plan['executable_problem']}[/red]")


def _argv_text(argv: list[str]) -> str:
    """An argv as one line a shell would split back into the same words."""
    import shlex

    return shlex.join(argv)


def history_table(rows: list[dict[str, Any]]) -> None:
    table = Table(
        f"started ({zone_name()})",
        "job",
        "status",
        "exit",
        "duration",
        "attempts",
        "params",
        "run id",
        box=None,
        header_style="bold",
    )
    for r in rows:
        style = STATUS_STYLE.get(r["status"], "yellow")
        table.add_row(
            _when(r["started_at"]),
            r["job"],
            Text(r["status"], style=style),
            _str(r["exit_code"]),
            _secs_or(r["duration_s"]),
            _str(r["attempts"]),
            " ".join(f"{k}={v}" for k, v in r["params"].items()),
            r["run_id"][:8],
        )
    console.print(table if rows else "no runs recorded")


def status_table(rows: list[dict[str, Any]]) -> None:
    zone = zone_name()
    table = Table(
        "job",
        f"last run ({zone})",
        "status",
        "duration",
        f"last success ({zone})",
        f"next due ({zone})",
        "stale",
        "lock",
        box=None,
        header_style="bold",
    )
    for r in rows:
        status = r["status"] or "never run"
        stale = "-" if r["stale"] is None else Text("STALE", style="bold red") if r["stale"] else "ok"
        locks = ", ".join(f"{h['lock_key']} pid {h.get('pid')}" for h in r["locks"]) or "-"
        job = " ".join([r["job"], *(f"{k}={v}" for k, v in r.get("params", {}).items())])
        table.add_row(
            job,
            _when(r["last_run_at"]),
            Text(status, style=STATUS_STYLE.get(status, "yellow")),
            _secs_or(r["duration_s"]),
            _when(r["last_success_at"]),
            _when(r["next_due"]) if r["next_due"] else _never(r),
            stale,
            locks,
        )
    console.print(table)


def locks_table(held: list[dict[str, Any]]) -> None:
    table = Table(
        "lock key", "job", "pid", "child pid", "run id", "host", f"since ({zone_name()})", box=None, header_style="bold"
    )
    for h in held:
        table.add_row(
            str(h["lock_key"]),
            _str(h.get("job")),
            _str(h.get("pid")),
            _str(h.get("child_pid")),
            _str(h.get("run_id")),
            _str(h.get("host")),
            _when(h.get("since")),
        )
    console.print(table if held else "no locks held")


def _never(row: dict[str, Any]) -> str:
    """Why a job has no next due time: disabled, a one-time job done, or simply none."""
    return "disabled" if row.get("enabled") is False else "done" if row.get("done") else "-"


def _str(value: object) -> str:
    return "-" if value is None else str(value)


def _secs_or(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def _secs(seconds: float) -> str:
    from runjob.durations import format_duration

    return format_duration(seconds)


class StatusLine:
    """The live line under a run's output: job, run id, attempt, elapsed time."""

    def __init__(self) -> None:
        import time

        self.clock = time.monotonic
        self.started = self.clock()
        self.job = self.run_id = ""
        self.attempt = 1

    def __rich__(self) -> Text:
        elapsed = self.clock() - self.started
        return Text.assemble(
            ("● ", "cyan"),
            (self.job, "bold"),
            f"  run {self.run_id[:8]}  attempt {self.attempt}  ",
            (f"{elapsed:6.1f}s", "cyan"),
        )


class PrettySink:
    """A run as readable, coloured lines (the terminal form of the JSON records), with a
    live status line (job, run id, attempt, elapsed) while it runs."""

    def __init__(self) -> None:
        from rich.live import Live

        self.status = StatusLine()
        self.live = Live(self.status, console=console, refresh_per_second=4, transient=True)
        self.live.start()

    def record(self, fields: dict[str, Any]) -> None:
        self.status.job, self.status.run_id = fields["job"], fields["run_id"]
        if "attempt" in fields:
            self.status.attempt = fields["attempt"]
        if fields["event"] == "run.end":
            self.live.stop()
        self._record(fields)

    def _record(self, fields: dict[str, Any]) -> None:
        event = fields["event"]
        if event == "run.output":
            self._line(fields["stream"], fields.get("line", fields["message"]))
            return
        style = {"error": "bold red", "warning": "yellow"}.get(fields["level"], "dim")
        if event == "run.end":
            style = "bold " + STATUS_STYLE.get(fields["status"], "red")
        if event == "run.start":
            style = "bold"
        console.print(Text(f"{fields['timestamp'][11:23]} {event:<11} {fields['message']}", style=style))
        if event == "run.start":
            console.print(Text(f"             run id {fields['run_id']}", style="dim"))

    def output(self, common: dict[str, Any], stream: str, lines: list[str], attempt: int) -> None:
        self.status.attempt = attempt
        for line in lines:
            self._line(stream, line)

    def output_plain(self, common: dict[str, Any], stream: str, lines: list[bytes], attempt: int) -> None:
        self.output(common, stream, [line.decode() for line in lines], attempt)

    def _line(self, stream: str, line: str) -> None:
        console.print(Text("  │ ", style="dim") + Text(line, style="red" if stream == "stderr" else ""))

    def close(self) -> None:
        self.live.stop()
