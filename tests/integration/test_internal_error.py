"""A bug in a handler closes that one connection with 1011; the server keeps serving."""

from __future__ import annotations

import uuid

import pytest

from tests.support import clients
from worker_server.store import KnownTasks


async def test_unexpected_error_closes_1011_and_others_carry_on(
    start_servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(self: KnownTasks, pool: object, task_id: uuid.UUID) -> bool:
        raise RuntimeError("injected bug")

    async with start_servers() as servers:
        height = clients.next_height()
        async with clients.worker_and_node(servers) as (worker, node):
            task_id = await clients.job_sent(node, worker, height)
            with monkeypatch.context() as patch:
                patch.setattr(KnownTasks, "exists", broken)
                async with clients.worker_client(servers.worker_url) as victim:
                    await victim.send(clients.solution(task_id))
                    assert await victim.closed() == (1011, "internal error")
            body = clients.solution_body()
            await worker.send(clients.solution(task_id, body=body))
            assert await node.receive() == body
