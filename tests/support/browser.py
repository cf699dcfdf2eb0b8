"""Debian's headless Chromium through Playwright's async API.

Async, because the services under test run on the test session's event loop:
Playwright's sync API would block that loop (and refuses to run inside one).
The browser is the system's `chromium`, never one Playwright downloads.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator

from playwright.async_api import Page, async_playwright, expect

MISSING = (
    "chromium is not on PATH: install Debian's `chromium` package "
    "(`make test` does it when run as root)"
)
# Polls of a loaded machine may take a while; an assertion waits this long before failing.
TIMEOUT_MS = 30_000

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
expect.set_options(timeout=TIMEOUT_MS)


def executable() -> str | None:
    """The system Chromium, if installed."""
    return shutil.which("chromium") or (
        "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None
    )


@contextlib.asynccontextmanager
async def chromium_page(url: str) -> AsyncIterator[Page]:
    """A headless Chromium tab showing `url`; the browser is stopped when the block ends."""
    binary = executable()
    if binary is None:
        raise RuntimeError(MISSING)
    async with async_playwright() as playwright:
        # Playwright starts Chromium without its sandbox by default (it refuses root anyway).
        browser = await playwright.chromium.launch(executable_path=binary, headless=True)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            await page.goto(url)
            yield page
        finally:
            await browser.close()
