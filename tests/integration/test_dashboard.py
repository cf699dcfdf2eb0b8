"""The dashboard in real headless Chromium, as an operator uses it."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from node_server.cluster import quantile
from tests.support import browser, clients
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
async def test_an_operator_clicks_through_a_two_instance_cluster(start_servers) -> None:
    """Log in, watch connections on both instances arrive live, search a worker, retire."""
    if browser.executable() is None:
        pytest.fail(browser.MISSING)
    admin = {"admin_token": TOKEN}
    async with start_servers(node=admin) as a, start_servers(node=admin) as b:
        async with browser.chromium_page(f"{a.node_http}/dashboard") as page:
            page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
            # Logging in: the token typed into the form, never in the URL.
            await expect(page.locator("#login")).to_be_visible()
            await page.locator("#token").fill(TOKEN)
            await page.get_by_role("button", name="Log in").click()
            await expect(page.locator("#login")).to_be_hidden()
            for role in ("node_server", "worker_server"):  # both of each (and maybe others')
                rows = page.locator("#instances tbody tr").filter(has_text=role)
                await expect(rows.nth(1)).to_be_visible()
            workers = page.locator("#workers")
            await expect(workers).to_have_text(NUMBER)
            shown = int(await workers.inner_text())
            nodes_shown = int(await page.locator("#nodes").inner_text())
            hardware = [f"dash-{uuid.uuid4().hex[:6]}" for _ in range(5)]
            async with (
                clients.worker_client(a.worker_url, clients.welcome(hardware[0])) as busiest,
                clients.worker_client(a.worker_url, clients.welcome(hardware[1])),
                clients.worker_client(a.worker_url, clients.welcome(hardware[2])),
                clients.worker_client(b.worker_url, clients.welcome(hardware[3])),
                clients.worker_client(b.worker_url, clients.welcome(hardware[4])),
                clients.node_client(b.node_url),
            ):
                await _solve(a, busiest)
                # A live update: pushed by the server, no reload, no click.
                await _number_at_least(page, "workers", shown + 5)
                await expect(page.locator("#status")).to_have_text(re.compile(r"^live · "))
                await _number_at_least(page, "nodes", nodes_shown + 1)  # on B, seen from A
                # Earlier tests may hold the busiest places: the table only has to show.
                await expect(page.locator("#busiest tbody tr").first).to_be_visible()
                await expect(page.locator("#chart path")).to_have_count(3)
                # The fleet: the worker that solved found by its id, with its solution,
                # and none of the others.
                await page.locator("#fleet-query").fill(hardware[0])
                found = page.locator("#fleet tbody tr")
                await expect(found).to_have_count(1)
                await expect(found.locator("td").nth(0)).to_have_text(hardware[0])
                await expect(found.locator("td").nth(6)).to_have_text("1")
                await page.screenshot(path=SCREENSHOT, full_page=True)
                # Retire the current job (the confirmation is accepted above).
                await page.locator("#retire").click()
                await expect(page.locator("#retire-result")).to_have_text(re.compile("^retired"))
            await expect(page.locator("#status")).not_to_have_class(re.compile(r"\berror\b"))
    assert SCREENSHOT.stat().st_size > 10_000


async def _number_at_least(page: Page, element_id: str, least: int) -> None:
    await page.wait_for_function(
        "([id, least]) => Number(document.getElementById(id).textContent) >= least",
        arg=[element_id, least],
    )


async def _solve(stack: Stack, worker) -> None:
    """One job and one solution, so the chart and the busiest-workers table have data."""
    height = clients.next_height()
    async with clients.node_client(stack.node_url) as node:
        task_id = await clients.job_sent(node, worker, height)
        await worker.send(clients.solution(task_id, target=500))
        await node.receive()
