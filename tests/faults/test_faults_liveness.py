"""Worker liveness (heartbeats, left-open and stale rows) and readiness across outages."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import Callable

import asyncpg
import pytest

from tests.support import clients
from tests.support.fault_stack import FaultStack
from tests.support.instances import Service
from tests.support.poll import until
from tests.support.stack import StartServers

pytestmark = pytest.mark.faults
OPEN_ROW = """
INSERT INTO worker (ip, remote_ip, address, hardware, hardware_id, caption, server_instance,
                    connected_at, last_seen_at)
VALUES ('203.0.113.7', '127.0.0.1', 'aleo1test', 'gpu', $1, 'rig', $2,
        now() - make_interval(secs => $3), now() - make_interval(secs => $3))
RETURNING id
"""


async def closed_row(db: asyncpg.Pool, row_id: int) -> asyncpg.Record:
    return await until(
        lambda: db.fetchrow("SELECT disconnected_at, close_code FROM worker WHERE id = $1", row_id),
        lambda row: row["disconnected_at"] is not None,
        timeout=30,
    )


async def test_worker_that_stops_answering_pings_is_closed_and_its_row_too(
    start_servers: StartServers, db: asyncpg.Pool
) -> None:
    hardware_id = f"silent-{uuid.uuid4().hex[:8]}"
    async with start_servers(worker={"heartbeat_seconds": 0.3}) as stack:
        # autoping off and nothing read: the server's pings go unanswered.
        async with clients.connect(stack.worker_url, autoping=False, heartbeat=None) as ws:
            await ws.send_json(clients.welcome(hardware_id))
            query = "SELECT id FROM worker WHERE hardware_id = $1"
            row_id = await until(lambda: db.fetchval(query, hardware_id), timeout=30)
            row = await closed_row(db, row_id)
    assert row["close_code"] == 1006  # closed by the server without the peer's close frame


async def test_rows_left_open_by_a_crash_are_closed_at_the_next_start(
    start_servers: StartServers, db: asyncpg.Pool
) -> None:
    instance = f"crashed-{uuid.uuid4().hex[:8]}"
    row_id = await db.fetchval(OPEN_ROW, "left-open", instance, 5.0)
    async with start_servers(worker={"server_instance": instance}):
        row = await closed_row(db, row_id)
    assert row["close_code"] == 1006


async def test_stale_rows_are_closed_and_live_ones_refreshed(
    start_servers: StartServers, db: asyncpg.Pool
) -> None:
    stale_id = await db.fetchval(OPEN_ROW, "stale", f"gone-{uuid.uuid4().hex[:8]}", 3600.0)
    hardware_id = f"live-{uuid.uuid4().hex[:8]}"
    settings = {"liveness_interval_seconds": 0.2, "stale_after_seconds": 600}
    async with start_servers(worker=settings) as stack:
        async with clients.connect(stack.worker_url) as ws:
            await ws.send_json(clients.welcome(hardware_id))
            row = await closed_row(db, stale_id)
            assert row["close_code"] == 1006
            # The live row is touched, never closed.
            touched = "SELECT last_seen_at > connected_at FROM worker WHERE hardware_id = $1"
            await until(lambda: db.fetchval(touched, hardware_id), timeout=30)
            assert (
                await db.fetchval(
                    "SELECT disconnected_at FROM worker WHERE hardware_id = $1", hardware_id
                )
                is None
            )


async def restart_while_down(service: Service) -> None:
    """SIGTERM and start again; it must serve /readyz, answering 503."""
    service.signal(signal.SIGTERM)
    assert await service.exited(timeout=30) == 0
    service.start()
    status = await until(service.readyz, timeout=60)
    assert status == 503


async def while_down(
    stop: Callable[[], None], start: Callable[[], None], *services: Service
) -> None:
    """Stop a dependency, restart `services` while it is down, start it: they get ready."""
    await asyncio.to_thread(stop)
    try:
        for service in services:
            await restart_while_down(service)
    finally:
        await asyncio.to_thread(start)
    for service in services:
        await service.ready()


async def test_services_started_while_a_dependency_is_down_become_ready_on_their_own(
    faults: FaultStack,
) -> None:
    stack, services = faults, faults.services
    postgres, rabbit = stack.postgres, stack.rabbit
    await while_down(
        postgres.stop, postgres.start, services["process_job_worker"], services["worker_server"]
    )
    solution_worker, node = services["process_solution_worker"], services["node_server"]
    await while_down(rabbit.stop_app, rabbit.start_app, solution_worker, node)
    await stack.all_ready()
