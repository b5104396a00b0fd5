#!/usr/bin/env python3
"""A stand-in for a shop's console commands, so the example registry runs on any Linux box.

Usage: shop.py TASK [ARG ...]; each task behaves like the real job it imitates
(prints progress, logs JSON, fails transiently, runs too long ...).
"""

import json
import os
import sys
import time


def say(*words):
    print(*words, flush=True)


def pull_orders(platform):
    for n in range(3):
        say(f"platform={platform} fetched page {n + 1}: 25 orders")
    say(f"enqueued 75 process-order jobs for {platform}")


def import_stock(supplier):
    say(f"importing stock feed of supplier {supplier}")
    time.sleep(0.2)
    say(json.dumps({"level": "info", "message": "stock import done", "supplier": supplier, "rows": 1200}))


def process_queue(queue):
    for n in range(5):
        say(f"queue {queue}: processed message {n + 1}")


def cleanup_logs(retention_days):
    say(f"deleting log files older than {retention_days} days")


def sync_prices():
    print("SQLSTATE[40001]: Deadlock found when trying to get lock", file=sys.stderr, flush=True)
    sys.exit(75)


def rebuild_search_index():
    say("rebuilding the search index (this takes a while)")
    time.sleep(60)


def sales_report(day):
    for region in ("eu", "us"):
        say(json.dumps({"message": "sales", "day": day, "region": region, "orders": 42, "revenue_cents": 123456}))


def abandoned_carts():
    has = "set" if os.environ.get("SMTP_PASSWORD") else "missing"
    say(f"smtp password {has}; sent 3 reminder mails (run {os.environ.get('RUNJOB_RUN_ID')})")


def fail():
    print("Traceback (most recent call last): ValueError: unexpected null in feed", file=sys.stderr)
    sys.exit(3)


TASKS = {
    "pull-orders": pull_orders,
    "import-stock": import_stock,
    "process-queue": process_queue,
    "cleanup-logs": cleanup_logs,
    "sync-prices": sync_prices,
    "rebuild-search-index": rebuild_search_index,
    "sales-report": sales_report,
    "abandoned-carts": abandoned_carts,
    "fail": fail,
}

if __name__ == "__main__":
    TASKS[sys.argv[1]](*sys.argv[2:])
