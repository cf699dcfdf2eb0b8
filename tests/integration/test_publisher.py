"""The confirming publisher against the real RabbitMQ."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from shared.errors import PublishRefused
from shared.metrics import PUBLISH_BATCH
from shared.protocol import JobMessage, encode
from shared.rabbit import JOB_EXCHANGE, Publisher
from tests.support import clients
from tests.support.ports import free_port
from tests.support.stack import Backends


async def test_a_publish_right_after_start_waits_for_the_first_connection(
    backends: Backends,
) -> None:
    publisher = Publisher(backends.rabbitmq_url, JOB_EXCHANGE, "wspool-test")
    running = asyncio.create_task(publisher.run())
    try:
        assert not publisher.ready  # still connecting: the publish below has to wait
        height = clients.next_height()
        job = JobMessage(
            epoch_challenge=clients.challenge(height), proof_target=1, block_height=height
        )
        await publisher.publish(encode(job), received_at=0)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


async def test_a_publish_without_a_broker_is_refused() -> None:
    nowhere = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    publisher = Publisher(nowhere, JOB_EXCHANGE, "wspool-test")
    running = asyncio.create_task(publisher.run())
    try:
        with pytest.raises(PublishRefused, match="not connected"):
            await publisher.publish(b"{}", received_at=0)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


async def test_concurrent_publishes_share_confirms_and_each_caller_gets_its_own(
    backends: Backends,
) -> None:
    publisher = Publisher(backends.rabbitmq_url, JOB_EXCHANGE, "wspool-test-batch")
    running = asyncio.create_task(publisher.run())
    histogram = PUBLISH_BATCH.labels(exchange=JOB_EXCHANGE)
    try:
        await publisher.publish(encode(_job()), received_at=0)  # connected
        publishes_before = _observed(histogram)
        bodies = [encode(_job()) for _ in range(60)]
        await asyncio.gather(*(publisher.publish(body, received_at=1) for body in bodies))
        # Every caller returned, confirmed; the 60 went out in far fewer publishes.
        assert _observed(histogram) - publishes_before < 10
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    with pytest.raises(PublishRefused):  # stopped: refused, not left waiting
        await publisher.publish(b"{}", received_at=0)


def _job() -> JobMessage:
    height = clients.next_height()
    return JobMessage(
        epoch_challenge=clients.challenge(height), proof_target=1, block_height=height
    )


def _observed(histogram: object) -> float:
    """How many publishes the histogram counted (its `_count` sample)."""
    for metric in histogram.collect():  # type: ignore[attr-defined]
        for sample in metric.samples:
            if sample.name.endswith("_count"):
                return sample.value
    return 0.0
