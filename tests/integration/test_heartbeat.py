"""The instance heartbeat rides out a database that refuses it for a while."""

from __future__ import annotations

import contextlib
import logging
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest
from aiohttp import web

from shared.db import POOL, create_pool
from shared.runtime.health import add_health_routes
from shared.runtime.instances import UPSERT, heartbeat
from tests.support.poll import until
from tests.support.stack import Backends

ROLE = "heartbeat_test"
ROW = "FROM instance WHERE role = $1 AND name = $2"
BEAT = f"SELECT heartbeat_at {ROW}"


async def test_a_beat_postgres_refuses_is_logged_and_the_next_one_lands(
    backends: Backends, db: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    """A Postgres error that means "not now" (here a statement timeout, sqlstate
    class 57 like "the database system is starting up") is a warning; the loop
    goes on and the row is fresh again once the database answers."""
    name = f"beat-{uuid.uuid4().hex[:8]}"
    await db.execute(UPSERT, ROLE, name, "test", datetime.now(UTC), False, "{}")
    app = web.Application()
    add_health_routes(app, 3)
    locker = await asyncpg.connect(backends.postgres_dsn)
    try:
        # The heartbeat's own connections give up on a row lock after 300 ms.
        async with create_pool(f"{backends.postgres_dsn}?statement_timeout=300", 2) as pool:
            app[POOL] = pool
            held = locker.transaction()
            await held.start()
            await locker.execute(f"SELECT 1 {ROW} FOR UPDATE", ROLE, name)
            before = await db.fetchval(BEAT, ROLE, name)
            with caplog.at_level(logging.WARNING, logger="shared"):
                async with contextlib.asynccontextmanager(heartbeat(ROLE, name))(app):

                    async def refused() -> bool:
                        return "heartbeat_failed" in caplog.text

                    await until(refused, timeout=10.0)
                    await held.rollback()  # the database takes beats again

                    async def landed() -> bool:
                        return await db.fetchval(BEAT, ROLE, name) > before

                    await until(landed, timeout=10.0)
        failed = [r for r in caplog.records if r.getMessage() == "heartbeat_failed"]
        assert "QueryCanceledError" in failed[0].__dict__["error"]
        assert "task_failed" not in caplog.text, "the heartbeat loop itself failed"
    finally:
        await locker.close()
