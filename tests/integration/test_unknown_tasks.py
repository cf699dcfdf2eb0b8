"""worker_server's task cache against the real job table: made-up ids cost one query."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import orjson

from worker_server.store import KnownTasks


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingPool:
    """The real pool, with its lookups counted."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.lookups = 0

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        self.lookups += 1
        return await self.pool.fetchrow(query, *args)


async def test_an_unknown_task_is_looked_up_once_until_its_short_ttl_ends(
    db: asyncpg.Pool,
) -> None:
    clock, pool = Clock(), CountingPool(db)
    tasks = KnownTasks(missing_seconds=2.0, clock=clock)
    late, made_up = uuid.uuid4(), [uuid.uuid4() for _ in range(19)]
    for _ in range(30):  # 30 identities sending the same 19 made-up ids
        for task_id in made_up:
            assert not await tasks.exists(pool, task_id)  # type: ignore[arg-type]
    assert pool.lookups == 19
    assert not await tasks.exists(pool, late)  # type: ignore[arg-type]
    # Its job is stored after the first lookup (low height: never anyone's current job).
    await db.execute(
        "INSERT INTO job (block_height, epoch_challenge, task_id) VALUES ($1, $2, $3)",
        uuid.uuid4().int % 100_000,
        orjson.dumps({"epoch_number": 1}).decode(),
        late,
    )
    assert not await tasks.exists(pool, late), "within the TTL: still unknown"  # type: ignore[arg-type]
    clock.now += 2.1
    assert await tasks.exists(pool, late), "found once the TTL is over"  # type: ignore[arg-type]
    assert pool.lookups == 21
