"""JSON over HTTP in tests: one request, its status and decoded body."""

from __future__ import annotations

import contextlib
from typing import Any

import aiohttp
import orjson

JSON = {"Content-Type": "application/json"}
# What an admin POST or DELETE without a JSON body carries (node_server/access.py).
ADMIN_REQUEST = {"X-Wspool-Request": "1"}


async def call(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """(status, decoded JSON body) of one request; the answer must be JSON."""
    data = body if isinstance(body, bytes | None) else orjson.dumps(body)
    sent = JSON if data is not None else ADMIN_REQUEST if method != "GET" else {}
    headers = {**sent, **(headers or {})}
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url, data=data, headers=headers) as response:
            assert response.content_type == "application/json", await response.text()
            return response.status, orjson.loads(await response.read())


async def status(url: str, **kwargs: Any) -> int | None:
    """The status a GET of `url` answers; None while nothing answers there."""
    with contextlib.suppress(aiohttp.ClientError):
        async with aiohttp.ClientSession() as session, session.get(url, **kwargs) as response:
            return response.status
    return None
