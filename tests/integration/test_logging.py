"""JSON log lines: the fields an operator greps for, and no tracebacks for client mistakes."""

from __future__ import annotations

import logging
import uuid

import aiohttp
import orjson
import pytest

from shared.logs import JsonFormatter
from tests.support import clients
from tests.support.poll import until
from tests.support.stack import Stack, servers_with


def test_a_line_is_one_json_object_with_the_operator_fields() -> None:
    record = logging.makeLogRecord(
        {
            "name": "worker_server.ws",
            "levelname": "INFO",
            "levelno": logging.INFO,
            "msg": "worker_connected",
            "connection_id": 7,
            "remote": "127.0.0.1",
            "hardware_id": "gpu-0",
        }
    )
    line = JsonFormatter("worker_server").format(record)
    assert "\n" not in line
    entry = orjson.loads(line)
    assert entry["service"] == "worker_server" and entry["event"] == "worker_connected"
    assert entry["level"] == "INFO"
    assert (entry["connection_id"], entry["remote"], entry["hardware_id"]) == (
        7,
        "127.0.0.1",
        "gpu-0",
    )


strict = servers_with(max_invalid_messages=2, max_message_bytes=1024)


async def test_client_mistakes_are_logged_without_tracebacks(
    strict: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    hardware_id = f"log-{uuid.uuid4().hex[:6]}"
    async with clients.node_client(strict.node_url) as node:
        await node.send(b"\xff\xfe not json")
        await node.send(orjson.dumps(clients.job(1, proof_target=-1)))
        await node.closed()
    async with clients.node_client(strict.node_url) as node:
        await node.send(b"x" * 5000)
        await node.closed()
    async with clients.connect(strict.worker_url) as ws:
        await ws.send_bytes(b"[1, 2]")
        await ws.receive(5)
    async with clients.worker_client(strict.worker_url, clients.welcome(hardware_id)) as worker:
        await worker.send(clients.solution(str(uuid.uuid4())))
        await worker.send(b"{")
        await worker.closed()
    async with aiohttp.ClientSession() as session:
        for url in ("/api/jobs?limit=-3", "/api/jobs/zzz", "/api/workers?connected=2"):
            async with session.get(strict.node_http + url) as response:
                assert response.status == 400
        async with session.post(f"{strict.node_http}/api/jobs", json=[]) as response:
            assert response.status == 400
        for address in (strict.node_address, strict.worker_address):  # no websocket upgrade
            async with session.get(f"http://{address}/") as response:
                assert response.status == 400
    await _until_logged(caplog, "worker_disconnected")
    tracebacks = [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert tracebacks == []
    worker_lines = [r for r in caplog.records if r.name == "worker_server.ws"]
    assert {r.getMessage() for r in worker_lines} >= {"worker_connected", "worker_disconnected"}
    assert all(getattr(r, "hardware_id", None) == hardware_id for r in worker_lines)


async def _until_logged(caplog: pytest.LogCaptureFixture, event: str) -> None:
    await until(lambda: any(r.getMessage() == event for r in caplog.records), timeout=10)
