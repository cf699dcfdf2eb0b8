"""Block heights for the benchmark's jobs: just above the stack's newest, retired after.

A job far above the newest one is refused (`max_height_jump`), and one left
above the chain's height would keep every worker from real jobs. So the
benchmark goes on from the newest job one height at a time, and when done
retires every job it sent through the admin API: the stack is left with the
job that was current before it ran.
"""

from __future__ import annotations

import aiohttp
import asyncpg

NEWEST = "SELECT max(block_height) FROM job WHERE retired_at IS NULL"
TASKS = "SELECT task_id FROM job WHERE block_height = ANY($1::bigint[]) ORDER BY block_height"


class Heights:
    """Calling it gives the next height; every one given is remembered."""

    def __init__(self, newest: int | None) -> None:
        self.last = 0 if newest is None else newest
        self.sent: list[int] = []

    def __call__(self) -> int:
        self.last += 1
        self.sent.append(self.last)
        return self.last

    @classmethod
    async def above_newest(cls, postgres_dsn: str) -> Heights:
        connection = await asyncpg.connect(postgres_dsn, timeout=10)
        try:
            return cls(await connection.fetchval(NEWEST))
        finally:
            await connection.close()

    async def retire(self, node_http: str, postgres_dsn: str, admin_token: str) -> int:
        """Retire the jobs stored at the heights given out; returns how many."""
        connection = await asyncpg.connect(postgres_dsn, timeout=10)
        try:
            tasks = [row["task_id"] for row in await connection.fetch(TASKS, self.sent)]
        finally:
            await connection.close()
        # The header: node_server refuses a POST without it (or JSON), as a web page would send.
        headers = {"X-Wspool-Request": "1"}
        if admin_token:
            headers["Authorization"] = f"Bearer {admin_token}"
        async with aiohttp.ClientSession(headers=headers) as session:
            for task_id in tasks:
                url = f"{node_http}/api/jobs/{task_id}/retire"
                async with session.post(url) as response:
                    if response.status != 200:
                        raise RuntimeError(f"retiring {task_id}: {response.status}")
        return len(tasks)
