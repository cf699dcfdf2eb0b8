"""A dead letter RabbitMQ cannot route is not lost: the message stays unacked until
its dead-letter queue is back.

A process_job_worker of its own on a private vhost, whose job dead-letter
queue is deleted under it; real RabbitMQ, Postgres and Tansu.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest

from process_job_worker.app import create_app
from process_job_worker.settings import ProcessJobWorkerSettings
from shared.rabbit import REASON_HEADER
from shared.routes import JOB, dead_letter_queue
from tests.support.metrics import scrape
from tests.support.poll import until
from tests.support.ports import free_port
from tests.support.rabbit import publish
from tests.support.stack import RABBITMQ_SERVER, Backends, private_vhost, serving, wait_ready

JOB_DLQ = dead_letter_queue(JOB.queue)
REFUSED = ("wspool_dead_letters_refused_total", (("queue", JOB.queue),))


@pytest.fixture
async def vhost() -> AsyncIterator[str]:
    with private_vhost(f"wspool_test_returns_{uuid.uuid4().hex[:8]}") as name:
        if not name:
            pytest.skip("needs rabbitmqctl for a private vhost")
        yield name


async def test_a_dead_letter_with_no_queue_to_go_to_waits_until_the_queue_is_back(
    backends: Backends, vhost: str
) -> None:
    vhost_url = f"{RABBITMQ_SERVER}/{vhost}"
    port = free_port()
    settings = ProcessJobWorkerSettings(
        **backends.settings(port=port, rabbitmq_url=vhost_url, retry_max_seconds=0.5)
    )
    async with (
        serving(create_app(settings), port) as address,
        await aio_pika.connect(vhost_url) as connection,
    ):
        base = f"http://{address}"
        await wait_ready(base)
        channel = await connection.channel(publisher_confirms=True)
        await channel.queue_delete(JOB_DLQ)
        marker = f"not json {uuid.uuid4().hex}"
        await publish(channel, JOB.exchange, marker.encode())

        async def outcome() -> tuple[float, int, int]:
            return (await _refusals(base), *await _work_queue(vhost))

        # RabbitMQ returned the dead letter (counted) or the message is gone from the
        # work queue without one: only the first may happen.
        _refusals_seen, ready, unacked = await until(
            outcome, lambda got: got[0] >= 1 or got[1:] == (0, 0), timeout=20, every=0.2
        )
        assert ready + unacked == 1, "the bad message was acked with no dead letter: lost"

        # The dead-letter queue back (as the setup declares it), the letter arrives.
        await channel.declare_queue(JOB_DLQ, durable=True)
        dlq = await channel.get_queue(JOB_DLQ)
        letter = await until(lambda: dlq.get(fail=False, no_ack=True), timeout=20)
        assert letter.body == marker.encode()
        assert letter.headers[REASON_HEADER].startswith("not valid JSON")

        await until(lambda: _work_queue(vhost), lambda got: got == (0, 0), every=0.2)


async def _refusals(base: str) -> float:
    return (await scrape(base)).get(REFUSED, 0)


async def _work_queue(vhost: str) -> tuple[int, int]:
    """The job work queue's ready and unacknowledged messages, as RabbitMQ counts them."""
    command = ["rabbitmqctl", "-q", "list_queues", "-p", vhost, "--no-table-headers"]
    command += ["name", "messages_ready", "messages_unacknowledged"]
    listed = await asyncio.to_thread(
        subprocess.run, command, check=True, capture_output=True, text=True, timeout=60
    )
    for line in listed.stdout.splitlines():
        name, ready, unacked = line.split()
        if name == JOB.queue:
            return int(ready), int(unacked)
    raise AssertionError(f"no queue {JOB.queue} in {vhost}")
