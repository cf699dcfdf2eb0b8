"""/healthz, /readyz and /metrics, the same on every service.

Readiness is a set of named checks the service registers at start-up; each
returns True when its dependency is usable right now. Liveness is the
supervision of the background tasks: it fails only when one of them keeps
failing, which a restart of the process may cure and waiting will not.
Each check's latest result is also the gauge `wspool_ready{check}`, refreshed
by /readyz and by every scrape of /metrics (probes are cached, see `_Cached`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from shared.backoff import HEALTHY_RUN_SECONDS
from shared.errors import export_dependency_errors
from shared.metrics import READY, metrics_handler
from shared.runtime.loop_lag import LOOP_LAG, watch_loop_lag

Check = Callable[[], Awaitable[bool]]
READINESS = web.AppKey("readiness_checks", dict)
CHECK_TIMEOUT_SECONDS = 2.0
CHECK_INTERVAL_SECONDS = 1.0


@dataclass
class Supervision:
    """Failures of each supervised background task, in a row."""

    failure_limit: int
    failures: dict[str, int] = field(default_factory=dict)
    running_since: dict[str, float] = field(default_factory=dict)

    def started(self, task: str) -> None:
        self.running_since[task] = time.monotonic()

    def failed(self, task: str) -> None:
        if self._ran_well(task):
            self.failures[task] = 0
        self.failures[task] = self.failures.get(task, 0) + 1
        self.running_since.pop(task, None)

    def failing(self) -> dict[str, int]:
        """Tasks past the limit whose latest run has not proved itself yet."""
        return {
            task: count
            for task, count in self.failures.items()
            if count >= self.failure_limit and not self._ran_well(task)
        }

    def _ran_well(self, task: str) -> bool:
        since = self.running_since.get(task)
        return since is not None and time.monotonic() - since >= HEALTHY_RUN_SECONDS


SUPERVISION = web.AppKey("supervision", Supervision)


async def healthz(request: web.Request) -> web.Response:
    failing = request.app[SUPERVISION].failing()
    if failing:
        return web.json_response({"status": "failing", "failures": failing}, status=503)
    return web.json_response({"status": "ok"})


async def readiness(app: web.Application) -> dict[str, bool]:
    """Every check's result now, also set on `wspool_ready{check}`."""
    checks: dict[str, Check] = app[READINESS]
    results = dict(
        zip(checks, await asyncio.gather(*(_run(c) for c in checks.values())), strict=True)
    )
    for name, ready in results.items():
        READY.labels(check=name).set(1 if ready else 0)
    return results


async def readyz(request: web.Request) -> web.Response:
    results = await readiness(request.app)
    status = 200 if all(results.values()) else 503
    body: dict[str, object] = {
        "status": "ready" if status == 200 else "not_ready",
        "checks": results,
    }
    if LOOP_LAG in request.app:  # as of the latest sample: not a check, a figure to watch
        body["event_loop_lag_ms"] = round(request.app[LOOP_LAG].latest * 1000, 1)
    return web.json_response(body, status=status)


async def _run(check: Check) -> bool:
    try:
        return await asyncio.wait_for(check(), CHECK_TIMEOUT_SECONDS)
    except Exception:  # a failing check means not ready, whatever it raised
        return False


def add_health_routes(app: web.Application, task_failure_limit: int) -> None:
    app.setdefault(READINESS, {})
    app[SUPERVISION] = Supervision(task_failure_limit)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.cleanup_ctx.append(watch_loop_lag)
    export_dependency_errors()


async def metrics(request: web.Request) -> web.Response:
    """The Prometheus exposition, with `wspool_ready` as of this scrape."""
    await readiness(request.app)
    return await metrics_handler(request)


class _Cached:
    """A check probed at most once per `CHECK_INTERVAL_SECONDS`, however often /readyz is asked.

    Requests in between share the latest probe (a database round trip per
    request would let anyone who can reach /readyz load the database).
    """

    def __init__(self, check: Check, clock: Callable[[], float] = time.monotonic) -> None:
        self.check = check
        self.clock = clock
        self.probed_at = float("-inf")
        self.probe: asyncio.Future[bool] | None = None

    async def __call__(self) -> bool:
        now = self.clock()
        if self.probe is None or now - self.probed_at >= CHECK_INTERVAL_SECONDS:
            self.probed_at = now
            self.probe = asyncio.ensure_future(_run(self.check))
        # Shielded: a request that goes away must not cancel the probe others wait on.
        return await asyncio.shield(self.probe)


def add_check(
    app: web.Application, name: str, check: Check, clock: Callable[[], float] = time.monotonic
) -> None:
    app[READINESS][name] = _Cached(check, clock)
