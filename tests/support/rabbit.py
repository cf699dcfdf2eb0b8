"""Publishing straight to the services' exchanges, as the websocket servers do."""

from __future__ import annotations

import aio_pika
import asyncpg
import orjson

from shared.protocol import now_ns
from shared.routes import JOB
from tests.support import clients
from tests.support.poll import broadcast_row


async def publish(channel: aio_pika.abc.AbstractChannel, exchange: str, body: bytes) -> None:
    """`body` on `exchange`, with the received_at header the servers send."""
    target = await channel.get_exchange(exchange)
    await target.publish(aio_pika.Message(body, headers={"received_at": now_ns()}), routing_key="")


async def published_job(channel: aio_pika.abc.AbstractChannel, db: asyncpg.Pool) -> asyncpg.Record:
    """A valid job at a new height published on `job`: its row, once stored and broadcast."""
    height = clients.next_height()
    body = {"epoch_challenge": clients.challenge(height), "proof_target": 1, "block_height": height}
    await publish(channel, JOB.exchange, orjson.dumps(body))
    return await broadcast_row(db, "SELECT * FROM job WHERE block_height = $1", height)
