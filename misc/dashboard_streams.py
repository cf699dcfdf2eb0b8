"""How much open dashboard streams cost the read API: `GET /api/stats` with 0 and N streams.

    PYTHONPATH=. python -m misc.dashboard_streams [--streams 8] [--workers 5000]

Starts node_server in-process on private backends (a database of its own, a
Tansu; as the tests do), fills the `worker`, `job` and `solution` tables with
`--workers` connection rows (a few hundred open, the rest closed over the last
day) and proportionate jobs and solutions, then times `GET /api/stats` with
no stream open and with `--streams` event streams open. Prints the figures
and how many dashboard documents were built meanwhile; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
import uuid
from collections.abc import AsyncIterator

import aiohttp

from node_server.app import create_app
from node_server.settings import NodeServerSettings
from tests.support.ports import free_port
from tests.support.stack import private_backends, serving_server, wait_ready

EVERY_SECONDS = 0.1
FILL = """
INSERT INTO worker (ip, remote_ip, address, hardware, hardware_id, caption, server_instance,
  connected_at, last_seen_at, disconnected_at, close_code)
SELECT '10.0.0.1', '10.0.0.1', 'aleo1' || n, 'gpu', 'hw-' || (n % 997), 'c', 'load',
  now() - make_interval(secs => n * 86400.0 / $1),
  now() - make_interval(secs => n * 86400.0 / $1),
  CASE WHEN n % 20 = 0 THEN NULL ELSE now() - make_interval(secs => n * 86400.0 / $1) END,
  CASE WHEN n % 20 = 0 THEN NULL ELSE 1000 END
FROM generate_series(1, $1) AS n;
"""
FILL_JOBS = """
INSERT INTO job (block_height, epoch_challenge, task_id, created_at, broadcast_at)
SELECT n, '{}'::jsonb, gen_random_uuid(), now() - make_interval(secs => ($1 - n) * 15.0),
  now() FROM generate_series(1, $1) AS n
"""
FILL_SOLUTIONS = """
INSERT INTO solution (task_id, nonce, hardware_id, caption, solution, solution_target,
  created_at, broadcast_at)
SELECT j.task_id, n::text, 'hw-' || (n % 997), 'c', '{}'::jsonb, 100,
  j.created_at, now()
FROM job j CROSS JOIN generate_series(1, $1) AS n
"""


async def fill(dsn: str, workers: int) -> None:
    import asyncpg

    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(FILL.replace("$1", str(workers)))
        await connection.execute(FILL_JOBS.replace("$1", str(workers // 2)))
        await connection.execute(FILL_SOLUTIONS.replace("$1", "10"))
        await connection.execute("ANALYZE")
    finally:
        await connection.close()


async def timed_stats(
    session: aiohttp.ClientSession, base: str, count: int, path: str = "/api/stats"
) -> list[float]:
    """`count` requests, one every `EVERY_SECONDS`: spread over several stream pushes."""
    times = []
    for _ in range(count):
        started = time.perf_counter()
        async with session.get(f"{base}{path}") as response:
            await response.read()
            assert response.status == 200, response.status
        times.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(EVERY_SECONDS)
    return times


@contextlib.asynccontextmanager
async def streams(session: aiohttp.ClientSession, base: str, count: int) -> AsyncIterator[None]:
    """`count` event streams, each read to its end, open while the block runs."""
    first: list[asyncio.Event] = [asyncio.Event() for _ in range(count)]

    async def read(seen: asyncio.Event) -> None:
        async with session.get(f"{base}/dashboard/events") as response:
            async for _line in response.content:
                seen.set()

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(read(seen)) for seen in first]
        await asyncio.gather(*(seen.wait() for seen in first))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()


async def builds(session: aiohttp.ClientSession, base: str) -> float | None:
    async with session.get(f"{base}/metrics") as response:
        for line in (await response.text()).splitlines():
            if line.startswith("wspool_dashboard_builds_total "):
                return float(line.split()[1])
    return None  # not exported (before the shared document)


def summary(name: str, times: list[float]) -> str:
    ordered = sorted(times)
    p95 = ordered[max(0, round(len(ordered) * 0.95) - 1)]
    return (
        f"{name}: median {statistics.median(ordered):.0f} ms, p95 {p95:.0f} ms, "
        f"max {ordered[-1]:.0f} ms"
    )


async def main(stream_count: int, workers: int, requests: int) -> None:
    async with private_backends(f"wspool_dashload_{uuid.uuid4().hex[:8]}") as backends:
        settings = NodeServerSettings(
            **backends.settings(port=free_port(), internal_port=free_port())
        )
        async with (
            serving_server(settings, create_app(settings)) as base,
            aiohttp.ClientSession() as session,
        ):
            await wait_ready(base)
            await fill(backends.postgres_dsn, workers)
            await timed_stats(session, base, 3)  # warm the pool
            document = await timed_stats(session, base, 10, "/api/dashboard")
            print(summary("GET /api/dashboard, no stream", document))
            print(summary("no stream", await timed_stats(session, base, requests)))
            async with streams(session, base, stream_count):
                before, started = await builds(session, base), time.monotonic()
                print(
                    summary(f"{stream_count} streams", await timed_stats(session, base, requests))
                )
                after, elapsed = await builds(session, base), time.monotonic() - started
            if before is not None and after is not None:
                print(f"documents built: {after - before:.0f} in {elapsed:.1f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--workers", type=int, default=5000)
    parser.add_argument("--requests", type=int, default=60)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.streams, arguments.workers, arguments.requests))
