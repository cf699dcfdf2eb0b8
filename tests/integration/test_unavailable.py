"""When RabbitMQ can't confirm, clients are told 1011 instead of losing their message."""

from __future__ import annotations

import aiohttp

from tests.support import clients
from tests.support.ports import free_port

UNREACHABLE_AMQP = f"amqp://guest:guest@127.0.0.1:{free_port()}/"


async def test_job_without_broker_confirm_closes_1011(start_servers) -> None:
    async with start_servers(rabbitmq_url=UNREACHABLE_AMQP, ready=False) as servers:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{servers.node_http}/readyz") as response:
                assert response.status == 503
                assert (await response.json())["checks"]["rabbitmq"] is False
        async with clients.node_client(servers.node_url) as node:
            await node.send(clients.job(clients.next_height()))
            code, reason = await node.closed()
    assert code == 1011
    assert reason == "job not accepted: broker unavailable"


async def test_solution_without_broker_confirm_closes_1011(start_servers, stack) -> None:
    height = clients.next_height()
    # A job the healthy stack stored, so the task is known to every worker_server.
    async with clients.worker_and_node(stack) as (worker, node):
        task_id = await clients.job_sent(node, worker, height)
    async with start_servers(rabbitmq_url=UNREACHABLE_AMQP, ready=False) as servers:
        async with clients.worker_client(servers.worker_url, clients.welcome()) as worker:
            await worker.send(clients.solution(task_id))
            code, reason = await worker.closed()
    assert code == 1011
    assert reason == "solution not accepted: broker unavailable"
