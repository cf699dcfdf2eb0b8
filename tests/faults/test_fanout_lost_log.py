"""A Kafka broker that restarts without its data must not make the fan-out skip records.

Tansu (memory storage) answers fetches at our old positions as if nothing
happened, so records produced after the restart would sit below the position
and never be read. These tests restart the broker faster than the outage
threshold, so only the log-end check can notice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from shared.fanout.modes import PerConnectionFanout, SharedFanout
from shared.fanout.stream import Stream
from shared.kafka import client_options, ensure_topics
from shared.settings import ServiceSettings
from tests.support.instances import PrivateTansu
from tests.support.poll import until

pytestmark = pytest.mark.faults
TOPIC = "lost-log"


class Collector:
    def __init__(self) -> None:
        self.items: list[str] = []

    def offer(self, item: str) -> None:
        self.items.append(item)

    def failed(self, error: Exception) -> None:
        raise AssertionError("a plain append cannot fail") from error

    async def wait_for(self, expected: set[str], timeout: float = 20.0) -> None:
        try:
            await until(lambda: expected <= set(self.items), timeout=timeout)
        except TimeoutError:
            missing = sorted(expected - set(self.items))
            raise AssertionError(f"never delivered: {missing}; got {self.items}") from None


async def produce(settings: ServiceSettings, values: list[str]) -> None:
    await ensure_topics(settings, {TOPIC: 1})
    producer = AIOKafkaProducer(**client_options(settings), acks="all")
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(TOPIC, value.encode())
    finally:
        await producer.stop()


@pytest.mark.parametrize("mode", ["shared", "per_connection"])
async def test_fanout_rereads_a_log_that_came_back_shorter(tmp_path: Path, mode: str) -> None:
    kafka = PrivateTansu(tmp_path)
    kafka.start()
    try:
        settings = ServiceSettings(kafka_bootstrap_servers=kafka.bootstrap)
        await produce(settings, [])
        collector = Collector()
        async with fanout_into(collector, settings, mode):
            before = [f"before-{i}" for i in range(5)]
            await produce(settings, before)
            await collector.wait_for(set(before))

            kafka.kill()
            kafka.start()  # same port, empty log, well within the outage threshold
            shorter = ["after-0", "after-1"]  # ends below the fan-out's position
            await produce(settings, shorter)
            await collector.wait_for(set(shorter))
            longer = [f"after-{i}" for i in range(2, 8)]  # refills past it
            await produce(settings, longer)
            await collector.wait_for(set(longer))
    finally:
        kafka.kill()


@contextlib.asynccontextmanager
async def fanout_into(
    collector: Collector, settings: ServiceSettings, mode: str
) -> AsyncIterator[None]:
    """The fan-out of `mode` running on TOPIC, delivering to `collector`."""
    if mode == "per_connection":
        per_connection = PerConnectionFanout(settings, Stream(TOPIC, bytes.decode))
        await per_connection.subscribe(collector)
        try:
            yield
        finally:
            await per_connection.close()
        return
    shared = SharedFanout(settings, Stream(TOPIC, bytes.decode), fetch_max_wait_ms=10)
    await shared.subscribe(collector)
    task = asyncio.create_task(shared.run())
    try:
        await until(lambda: shared.ready, timeout=20)
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
