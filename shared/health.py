"""/healthz, /readyz and /metrics, the same on every service.

Readiness is a set of named checks the service registers at start-up; each
returns True when its dependency is usable right now.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from shared.metrics import metrics_handler

Check = Callable[[], Awaitable[bool]]
READINESS = web.AppKey("readiness_checks", dict)
CHECK_TIMEOUT_SECONDS = 2.0


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    checks: dict[str, Check] = request.app[READINESS]
    results = dict(
        zip(checks, await asyncio.gather(*(_run(c) for c in checks.values())), strict=True)
    )
    status = 200 if all(results.values()) else 503
    return web.json_response(
        {"status": "ready" if status == 200 else "not_ready", "checks": results}, status=status
    )


async def _run(check: Check) -> bool:
    try:
        return await asyncio.wait_for(check(), CHECK_TIMEOUT_SECONDS)
    except Exception:  # a failing check means not ready, whatever it raised
        return False


def add_health_routes(app: web.Application) -> None:
    app.setdefault(READINESS, {})
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)


def add_check(app: web.Application, name: str, check: Check) -> None:
    app[READINESS][name] = check
