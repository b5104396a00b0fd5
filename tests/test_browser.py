"""The report and the dashboard in a real browser: headless Chromium (Debian's) through
Playwright. Every run's bar is there with its status, hovering shows its run id, exit code
and duration, the page logs no error and asks for nothing outside itself.

Skipped locally only when Playwright or /usr/bin/chromium is missing; under CI=true that
is a failure (.ci/run installs chromium)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Env, py, wait_for
from test_views import add_history_rows, make_runs, start_server

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = _missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests cannot run under CI: {missing}")
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield chromium
        chromium.close()


class Watched:
    """A page with its console errors, uncaught exceptions and every request it made."""

    def __init__(self, browser: Any) -> None:
        self.context = browser.new_context(viewport={"width": 1400, "height": 900})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))

    def bars(self) -> dict[str, str]:
        found = self.page.eval_on_selector_all(
            "[data-run-id][data-status]", "els => els.map(e => [e.dataset.runId, e.dataset.status])"
        )
        assert len(found) == len({run_id for run_id, _ in found})
        return dict(found)

    def close(self) -> None:
        self.context.close()


def expected_tips(rj: Env) -> dict[str, tuple[str, str, str]]:
    """run id -> (status, exit code, duration) as the history has them."""
    from runjob.views.model import duration_text

    rows = json.loads(rj.run("history", "--json").out)
    return {r["run_id"]: (r["status"], f"exit {r['exit_code']}", duration_text(r["duration_s"])) for r in rows}


def check_hover(watched: Watched, expected: dict[str, tuple[str, str, str]]) -> None:
    tip = watched.page.locator("#tip")
    for run_id, parts in expected.items():
        watched.page.locator(f'[data-run-id="{run_id}"]').hover(force=True)
        assert tip.is_visible()
        text = tip.inner_text()
        assert text.startswith(run_id), text
        assert all(f" · {part}" in text for part in parts), (text, parts)


def test_the_report_in_a_browser(browser: Any, rj: Env) -> None:
    runs = make_runs(rj)
    out = rj.dir / "report.html"
    assert rj.run("report", "--html", str(out)).code == 0
    watched = Watched(browser)
    try:
        watched.page.goto(out.as_uri())
        assert watched.bars() == runs
        check_hover(watched, expected_tips(rj))
        assert watched.page.locator("tr.job").count() == 3
        assert "bad <input> & worse" in watched.page.locator("pre.tail").first.inner_text()
        assert watched.errors == []
        assert watched.requests == [out.as_uri()]
    finally:
        watched.close()


def test_ten_thousand_runs_open_cleanly_every_bar_drawn(browser: Any, rj: Env) -> None:
    rj.write(f"[jobs.seed]\ncommand = {py('pass')}\n")
    first = rj.run("seed").one("run.end")["run_id"]
    ids = add_history_rows(rj, 10000)
    out = rj.dir / "big.html"
    assert rj.run("report", "--html", str(out)).code == 0
    watched = Watched(browser)
    try:
        watched.page.goto(out.as_uri())
        assert set(watched.bars()) == set(ids) | {first}
        drawn = watched.page.eval_on_selector_all(
            "rect[data-run-id]", "els => els.filter(e => e.getBoundingClientRect().width > 0).length"
        )
        assert drawn == len(ids) + 1
        assert watched.errors == [] and watched.requests == [out.as_uri()]
    finally:
        watched.close()


def test_the_dashboard_in_a_browser_shows_new_runs_live(browser: Any, rj: Env, tmp_path: Path) -> None:
    runs = make_runs(rj)
    proc, base = start_server(rj)
    watched = Watched(browser)
    try:
        watched.page.goto(base + "/")
        assert watched.bars() == runs
        check_hover(watched, expected_tips(rj))
        new = rj.run("ok").one("run.end")["run_id"]
        watched.page.wait_for_selector(f'[data-run-id="{new}"][data-status="success"]', timeout=60000)
        assert wait_for(lambda: len(watched.bars()) == len(runs) + 1)
        check_hover(watched, {new: expected_tips(rj)[new]})
        assert watched.errors == []
        assert watched.requests and all(url.startswith(base + "/") for url in watched.requests), watched.requests
    finally:
        watched.close()
        proc.terminate()  # type: ignore[attr-defined]
        proc.wait(timeout=30)  # type: ignore[attr-defined]
