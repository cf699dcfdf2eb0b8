"""What one row of the route table (`node_server.routes`) holds.

A route is served from its row (method, path, handler, access level, the
parameters its handler is called with) and described from it in
/api/openapi.json (`node_server.openapi`), so the two can't drift apart.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from aiohttp import web
from pydantic import BaseModel

from node_server.params import Params

# Who may call a route; what each level means is `node_server.access`.
Access = Literal["admin", "node", "login", "public"]


@dataclass(frozen=True)
class Operation:
    """How the API description tells a route: all but its security, which is its access's."""

    summary: str
    # The success status, its description and its body; None: any JSON object.
    ok: tuple[int, str, type[BaseModel] | None]
    # Path and query parameters, checked before the handler is called and passed to it.
    params: type[Params] | None = None
    # The request body (its handler reads it: each has its own limits and error codes).
    body: type[BaseModel] | None = None
    # The other statuses it may answer with; the access level's are added.
    errors: Mapping[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    # Called with the request and, if its operation has parameters, those parsed.
    handler: Callable[..., Awaitable[web.StreamResponse]]
    access: Access
    # None: not part of the API (the dashboard's page and event stream); every /api route has one.
    operation: Operation | None = None

    @property
    def params(self) -> type[Params] | None:
        return None if self.operation is None else self.operation.params
