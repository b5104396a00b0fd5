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


def job_table(rows: list[dict[str, Any]]) -> None:
    table = Table("job", "schedule", "next", "lock key", "timeout", "owners", box=None, header_style="bold")
    for row in rows:
        owners = ", ".join(f"{k}={v}" for k, v in row["owners"].items() if v)
        nxt = row["next"][0][:16].replace("T", " ") if row["next"] else "-"
        table.add_row(row["name"], row["schedule"] or "-", nxt, row["lock_key"], _secs(row["timeout_s"]), owners)
    console.print(table)


def job_detail(job: dict[str, Any]) -> None:
    table = Table(show_header=False, box=None)
    for key, value in job.items():
        if value not in (None, "", [], {}):
            table.add_row(Text(key, style="bold"), Text(str(value)))
    console.print(table)


def show_plan(plan: dict[str, Any]) -> None:
    console.print(f"[bold]dry run[/bold] of [cyan]{plan['job']}[/cyan]: nothing is locked or run")
    job_detail({k: v for k, v in plan.items() if k not in ("dry_run", "job")})
    if plan["executable_problem"]:
        console.print(f"[red]{plan['executable_problem']}[/red]")


def _secs(seconds: float) -> str:
    from runjob.durations import format_duration

    return format_duration(seconds)


class PrettySink:
    """A run as readable, coloured lines (the terminal form of the JSON records)."""

    def record(self, fields: dict[str, Any]) -> None:
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
        for line in lines:
            self._line(stream, line)

    def _line(self, stream: str, line: str) -> None:
        console.print(Text("  │ ", style="dim") + Text(line, style="red" if stream == "stderr" else ""))

    def close(self) -> None:
        pass
