"""/metrics after real traffic: every metric the operator relies on moves.

All services of a test session share one process, hence one prometheus
registry: the counters are read before and after the traffic and compared.
"""

from __future__ import annotations

import aio_pika

from node_server.app import create_app
from node_server.settings import NodeServerSettings
from shared.protocol import now_ns
from shared.routes import JOB
from tests.support import clients
from tests.support.metrics import Sample, scrape
from tests.support.poll import until
from tests.support.ports import free_port
from tests.support.stack import Backends, server_ports, serving_server

PER_ROLE = [
    "wspool_accepted_connections_total",
    "wspool_frames_in_total",
    "wspool_frames_out_total",
]
WATCHED: list[Sample] = [
    *((name, (("role", role),)) for name in PER_ROLE for role in ("node", "worker")),
    ("wspool_invalid_frames_total", (("role", "node"),)),
    ("wspool_dedup_hits_total", (("kind", "solution"),)),
    ("wspool_dead_lettered_total", (("queue", "job.persist_and_broadcast"),)),
    ("wspool_broker_errors_total", (("broker", "rabbitmq"),)),
    *(("wspool_end_to_end_latency_seconds_count", (("kind", k),)) for k in ("job", "solution")),
    ("wspool_stored_total", (("kind", "solution"),)),
]


async def test_metrics_move_with_real_traffic(start_servers, backends: Backends) -> None:
    nowhere = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    # A node_server whose RabbitMQ is nowhere keeps counting its failed connects.
    settings = NodeServerSettings(**backends.settings(**server_ports(), rabbitmq_url=nowhere))
    unreachable = create_app(settings)
    async with start_servers() as stack:
        before = await scrape(stack.node_http)
        await _traffic(stack.node_url, stack.worker_url)
        await _dead_letter(backends.rabbitmq_url)
        async with serving_server(settings, unreachable):
            still = await until(
                lambda: _unmoved(stack.node_http, before), lambda still: not still, timeout=20
            )
        assert still == []
        worker_side = await scrape(stack.worker_http)
    assert ("wspool_open_connections", (("role", "worker"),)) in worker_side


async def _unmoved(base: str, before: dict[Sample, float]) -> list[Sample]:
    """The watched samples that have not grown since `before`."""
    after = await scrape(base)
    return [s for s in WATCHED if after.get(s, 0) <= before.get(s, 0)]


async def _traffic(node_url: str, worker_url: str) -> None:
    body = clients.solution_body()
    async with clients.worker_client(worker_url) as worker, clients.node_client(node_url) as node:
        height, task_id = await clients.every_kind_of_frame(node, worker, body)
        # A duplicate from another connection (the same one's is refused before
        # publishing) reaches the deduplication in Postgres.
        async with clients.worker_client(worker_url) as other:
            await other.job_for(height)
            await other.send(clients.solution(task_id, target=500, body=body))


async def _dead_letter(rabbitmq_url: str) -> None:
    async with await aio_pika.connect(rabbitmq_url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(JOB.exchange)
        message = aio_pika.Message(b"not a job", headers={"received_at": now_ns()})
        await exchange.publish(message, routing_key="")


def _job_latency_count() -> float:
    from prometheus_client import REGISTRY

    return (
        REGISTRY.get_sample_value("wspool_end_to_end_latency_seconds_count", {"kind": "job"}) or 0.0
    )


async def test_job_latency_counts_live_fanout_not_the_latest_job_on_joining(stack) -> None:
    height = clients.next_height()
    async with clients.worker_and_node(stack) as (first, node):
        await node.send(clients.job(height))
        await first.job_for(height)
    before = _job_latency_count()
    async with clients.worker_client(stack.worker_url) as late:
        await late.job_for(height)  # the latest job, sent on joining: not a latency sample
        assert _job_latency_count() == before
        newer = clients.next_height()
        async with clients.node_client(stack.node_url) as node:
            await node.send(clients.job(newer))
            await late.job_for(newer)
        assert _job_latency_count() == before + 1
