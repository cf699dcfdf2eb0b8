"""What the phases share: progress lines, workers shared over swarm processes,
the services' process figures and the solution rows Postgres stored."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import asyncpg

from misc.bench.facts import process_metrics
from misc.bench.stack import Endpoints


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def connect_shares(count: int, processes: int) -> list[int]:
    return [count // processes + (i < count % processes) for i in range(processes)]


async def server_metrics(url: str) -> dict[str, float]:
    """Off the event loop: the node client keeps reading meanwhile."""
    return await asyncio.to_thread(process_metrics, url)


def pipeline_metrics(endpoints: Endpoints) -> dict[str, str]:
    return {
        "node_server": f"{endpoints.node_http}/metrics",
        "worker_server": f"{endpoints.worker_http}/metrics",
        "process_job_worker": f"{endpoints.job_worker_http}/metrics",
        "process_solution_worker": f"{endpoints.solution_worker_http}/metrics",
    }


async def stored(dsn: str, task_id: str | None, result: dict[str, Any]) -> int | None:
    """Rows stored for the throughput task, polled until they catch up (bounded)."""
    if task_id is None:
        return None
    try:
        connection = await asyncpg.connect(dsn, timeout=10)
    except (OSError, asyncpg.PostgresError) as error:
        say(f"  cannot count stored solutions: {error}")
        return None
    try:
        deadline = time.monotonic() + 30
        while True:
            stored = await connection.fetchval(
                "SELECT count(*) FROM solution WHERE task_id = $1", task_id
            )
            if stored >= result["offered"] or time.monotonic() > deadline:
                return stored
            await asyncio.sleep(0.5)
    finally:
        await connection.close()
