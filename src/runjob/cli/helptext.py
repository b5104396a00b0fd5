"""Examples shown under each command's `--help` (kept apart from app.py's option parsing)."""

from __future__ import annotations

EXAMPLES: dict[str, list[str]] = {
    "root": [
        "runjob pull-orders platform=acme        # the crontab form: run one job",
        "runjob run pull-orders --dry-run        # what it would do, running nothing",
        "runjob status                           # every job instance at a glance",
        "runjob --install-completion bash        # tab completion for job names and commands",
    ],
    "run": [
        "runjob run pull-orders platform=acme",
        "runjob run pull-orders --param platform=acme --timeout 90s --no-retry",
        "runjob run pull-orders --dry-run --format pretty",
        "runjob run report --output passthrough --log-file /var/log/runjob/report.log",
    ],
    "list": [
        "runjob list",
        "runjob list --json | jq -r '.[].name'",
        "runjob list --at 2026-03-29T01:30:00+01:00   # next due times seen from then",
    ],
    "show": ["runjob show pull-orders", "runjob show pull-orders --json"],
    "validate": ["runjob validate", "runjob --config staging/jobs.toml validate --json"],
    "history": [
        "runjob history",
        "runjob history pull-orders --limit 10",
        "runjob history --status failure --since 1d --json",
    ],
    "status": ["runjob status", "runjob status --json | jq '.[] | select(.stale)'"],
    "stale": ["runjob stale", "runjob stale --notify   # from cron: tell the owners of stale jobs"],
    "locks": ["runjob locks", "runjob locks --json"],
    "export": [
        "runjob export crontab | crontab -",
        "runjob export systemd --out /etc/systemd/system",
        "runjob export kubernetes --image registry.example.com/shop:1.4 --namespace shop --out k8s/",
    ],
    "import": [
        "crontab -l > old.crontab && runjob import crontab old.crontab >> jobs.toml",
        "runjob import crontab /etc/cron.d/shop 2> not-converted.txt",
    ],
    "tick": [
        "* * * * * runjob tick   # one crontab line for every scheduled job",
        "runjob tick --at 2026-12-01T03:00:00Z",
    ],
    "init": ["runjob init", "runjob --config /etc/runjob/jobs.toml init --force"],
    "logs": ["runjob logs 3f2c9a1e", "runjob logs 3f2c9a1e --follow | jq -r .message"],
    "report": [
        "runjob report --html /var/www/runs.html --since 7d",
        "runjob report --html import.html --job import-stock",
    ],
    "serve": ["runjob serve", "runjob serve --bind 127.0.0.1:9090"],
    "enqueue": ["runjob enqueue import-stock supplier=acme", "runjob enqueue build-feed --priority 10 --delay 15m"],
    "worker": ["runjob worker --concurrency 4", "runjob worker --burst   # drain what is due, then exit"],
    "supervise": ["runjob supervise order-consumer", "runjob supervise order-consumer --instances 1   # one per pod"],
    "queue": ["runjob queue --json", "runjob queue retry 42", "runjob queue pause import-stock"],
    "resume": ["runjob resume 3f2c9a1e", "runjob resume 3f2c9a1e-5b7d-4c1e-9a2b-0c4d6e8f1a2b"],
    "add": [
        "runjob add cleanup --command 'find /tmp -mtime +7 -delete' --schedule '0 3 * * *'",
        "runjob add report --command 'bin/console app:report' --timeout 15m --description 'Daily report'",
    ],
    "schema": ["runjob schema > jobs.schema.json"],
}


def epilog(command: str) -> str:
    r"""The examples as a help epilog; `\b` keeps click from re-wrapping the lines."""
    return "Examples:\n\n\b\n" + "\n".join("  " + line for line in EXAMPLES[command])
