"""The confirming publisher against the real RabbitMQ."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from shared.errors import PublishRefused
from shared.protocol import JobMessage, encode
from shared.rabbit import JOB_EXCHANGE, Publisher
from tests.support.clients import challenge, next_height
from tests.support.ports import free_port
from tests.support.stack import Backends


async def test_a_publish_right_after_start_waits_for_the_first_connection(
    backends: Backends,
) -> None:
    publisher = Publisher(backends.rabbitmq_url, JOB_EXCHANGE, "wspool-test")
    running = asyncio.create_task(publisher.run())
    try:
        assert not publisher.ready  # still connecting: the publish below has to wait
        height = next_height()
        job = JobMessage(epoch_challenge=challenge(height), proof_target=1, block_height=height)
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
