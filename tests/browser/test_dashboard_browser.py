"""The dashboard in a real headless Chromium against a live server with data: it loads with
no console error, its charts draw the data, and an admin action (pause) works."""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import httpx
import pytest

from tests.browser.demo import PROMPTS, seed
from tests.browser.live import CHROMIUM, CHROMIUM_ARGS, LiveServer

MISSING = (
    "no chromium executable (apt-get install chromium; .ci/run installs it)"
    if CHROMIUM is None
    else "Playwright for Python is not installed (pip install -e '.[dev]')"
    if importlib.util.find_spec("playwright") is None
    else None
)

pytestmark = [
    pytest.mark.browser,
    # skipped on a machine without them; in CI (.ci/run installs both) a missing one fails
    pytest.mark.skipif(MISSING is not None and not os.environ.get("CI"), reason=str(MISSING)),
]


async def _series_points(page: Any, chart: str) -> list[int]:
    """The number of data points of each line of a time chart."""
    points: list[int] = await page.eval_on_selector_all(
        f"#{chart} path.series", "els => els.map(e => Number(e.dataset.points))"
    )
    return points


async def test_dashboard_shows_data_and_pauses(live: LiveServer, admin_key: str) -> None:
    """After traffic, the list shows exposures and a leader, the experiment page draws the
    allocation history, the p-value history, the means with intervals and P(best) with the
    data, and Pause (confirmed) pauses the experiment — with no console error on the way."""
    if MISSING is not None:
        pytest.fail(f"the browser test cannot run in CI: {MISSING}")
    from playwright import async_api

    await seed(live.url, admin_key, rounds=4, per_round=150, pause_s=0.5)
    async with httpx.AsyncClient(
        base_url=live.url, headers={"Authorization": f"Bearer {admin_key}"}
    ) as client:
        r = await client.post("/v1/experiments", json={
            "key": "not-started", "policy": "fixed",
            "arms": [{"key": "a", "control": True}, {"key": "b"}]})
        assert r.status_code == 201, r.text
    problems: list[str] = []
    async with async_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("response", lambda r: problems.append(f"HTTP {r.status} {r.url}")
                    if r.status >= 400 else None)
            dialogs: list[str] = []

            async def accept(dialog: Any) -> None:
                dialogs.append(dialog.message)
                await dialog.accept()

            page.on("dialog", accept)

            await page.goto(live.url + "/ui")
            await page.fill("#admin-key", admin_key)
            await page.click("#login-form button[type=submit]")

            row = page.locator(f'#experiments tr[data-experiment="{PROMPTS}"]')
            await row.wait_for()
            assert await page.locator("#experiments tbody tr").count() == 4
            exposures = int((await row.locator("td.exposures").inner_text()).replace(",", ""))
            assert exposures == 600
            assert "P(best)" in await row.locator("td.leader").inner_text()
            assert await page.locator("#crumbs").inner_text() == "Experiments"

            await row.locator("a").click()
            await page.wait_for_selector("#chart-allocation path.series")
            assert await page.locator("#status").inner_text() == "running"
            assert await page.locator("#crumbs").inner_text() == f"Experiments / {PROMPTS}"
            # the optimizer reallocated between the rounds: every arm's line has several points
            allocation = await _series_points(page, "chart-allocation")
            assert len(allocation) == 3 and min(allocation) >= 2, allocation
            # a line per comparison (2 arms vs control) and per guardrail check, each from its
            # first recorded look to the current value
            pvalues = await _series_points(page, "chart-pvalue")
            assert len(pvalues) == 4 and min(pvalues) >= 2, pvalues
            assert await page.locator("#chart-means circle.mean").count() == 3
            assert await page.locator("#chart-means line.ci").count() == 3
            widths = await page.eval_on_selector_all(
                "#chart-pbest rect.bar", "els => els.map(e => Number(e.getAttribute('width')))"
            )
            assert len(widths) == 3 and sum(widths) > 100, widths
            assert await page.locator("#arms tbody tr").count() == 3
            assert await page.locator("#guardrails tbody tr").count() == 2
            assert "p =" in await page.locator("#srm").inner_text()
            assert await page.locator("#recommendation .rec-action").inner_text() != ""

            await page.click('button[data-action="pause"]')
            await page.locator("#status", has_text="paused").wait_for()
            assert len(dialogs) == 1 and "Pause" in dialogs[0]
            assert await page.is_disabled('button[data-action="pause"]')
            assert await page.is_enabled('button[data-action="resume"]')
            # a draft has no data yet: its page still draws, and only Start is offered
            await page.goto(f"{live.url}/ui#/e/not-started")
            await page.locator("#status", has_text="draft").wait_for()
            assert await page.is_enabled('button[data-action="start"]')
            assert await page.is_disabled('button[data-action="pause"]')
            assert await _series_points(page, "chart-allocation") == [1, 1]
        finally:
            await browser.close()
    async with httpx.AsyncClient() as client:
        r = await client.get(f"{live.url}/v1/experiments/{PROMPTS}",
                             headers={"Authorization": f"Bearer {admin_key}"})
    assert r.json()["status"] == "paused"
    assert problems == []
