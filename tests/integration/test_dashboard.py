"""The dashboard in real headless Chromium: it shows workers as they connect, live."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from playwright.async_api import expect

from node_server.cluster import quantile
from tests.support import browser
from tests.support.clients import (
    job_sent,
    next_height,
    node_client,
    solution,
    welcome,
    worker_client,
)
from tests.support.stack import Stack

SCREENSHOT = Path(__file__).resolve().parents[2] / "artifacts" / "dashboard.png"
TOKEN = "d4sh"
NUMBER = re.compile(r"^[0-9]+$")


def test_quantiles_interpolate_inside_the_bucket() -> None:
    buckets = [(0.01, 0.0), (0.1, 10.0), (1.0, 20.0), (float("inf"), 20.0)]
    assert quantile(buckets, 0.5) == pytest.approx(0.1)
    assert quantile(buckets, 0.25) == pytest.approx(0.055)
    assert quantile(buckets, 0.75) == pytest.approx(0.55)
    assert quantile([(0.1, 0.0), (float("inf"), 0.0)], 0.5) is None
    assert quantile([(0.1, 0.0), (float("inf"), 4.0)], 0.5) == 0.1


@pytest.mark.browser
async def test_dashboard_shows_connected_workers_live(start_servers) -> None:
    if browser.executable() is None:
        pytest.fail(browser.MISSING)
    async with start_servers(node={"admin_token": TOKEN}) as stack:
        async with browser.chromium_page(f"{stack.node_http}/dashboard") as page:
            # Logging in: the token typed into the form, never in the URL.
            await expect(page.locator("#login")).to_be_visible()
            await page.locator("#token").fill(TOKEN)
            await page.get_by_role("button", name="Log in").click()
            await expect(page.locator("#login")).to_be_hidden()
            workers = page.locator("#workers")
            await expect(workers).to_have_text(NUMBER)
            shown = int(await workers.inner_text())
            hardware = [f"dash-{uuid.uuid4().hex[:6]}" for _ in range(3)]
            async with (
                worker_client(stack.worker_url, welcome(hardware[0])) as busiest,
                worker_client(stack.worker_url, welcome(hardware[1])),
                worker_client(stack.worker_url, welcome(hardware[2])),
                node_client(stack.node_url),
            ):
                await _solve(stack, busiest)
                await page.wait_for_function(
                    "least => Number(document.getElementById('workers').textContent) >= least",
                    arg=shown + 3,
                )
                busiest_row = page.locator("#busiest tbody tr").filter(has_text=hardware[0])
                await expect(busiest_row).to_have_count(1)
                await expect(page.locator("#nodes")).to_have_text("1")
                await expect(page.locator("#chart path")).to_have_count(3)
                # a poll may fail under load; the page must recover by itself
                status = page.locator("#status")
                await expect(status).not_to_have_class(re.compile(r"\berror\b"))
                await expect(status).to_have_text(re.compile(r"^live · updated "))
                await page.screenshot(path=SCREENSHOT)
    assert SCREENSHOT.stat().st_size > 10_000


async def _solve(stack: Stack, worker) -> None:
    """One job and one solution, so the chart and the busiest-workers table have data."""
    height = next_height()
    async with node_client(stack.node_url) as node:
        task_id = await job_sent(node, worker, height)
        await worker.send(solution(task_id, target=500))
        await node.receive()
