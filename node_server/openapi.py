"""OpenAPI 3.1 description of node_server's HTTP API, served at /api/openapi.json.

Built from the route table it is given (`node_server.routes.ROUTES`): each
route's operation names its summary, success answer, other answers and
request body; its parameters come from its parameter model's JSON Schema
(`node_server.params`), the very model the server checks them with; its
security and token answers (401, 403) from its access level; every body
schema from the pydantic models the handlers answer with
(`node_server.api_models`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel

from node_server import api_models
from node_server.access import REQUEST_HEADER
from node_server.route import Access, Operation, Route

REF = "#/components/schemas/{model}"
# The encoded document, set where the routes are added.
DOCUMENT = web.AppKey("openapi_document", bytes)
# What each access level (`node_server.access`) adds to a route.
SECURITY: dict[Access, list[dict[str, list[str]]]] = {
    "admin": [{"admin": []}, {"session": []}],
    "node": [{"node": []}],
    "login": [],
    "public": [],
}
NOT_LOCAL = (
    "No admin_token is set and the caller is not on this machine; or the Host is not in "
    "admin_allowed_hosts, or the Origin not in allowed_origins (a web page's request)."
)
TOKEN_ANSWERS: dict[Access, dict[int, str]] = {
    "admin": {
        401: "The admin token is required (bearer header or the login cookie, never ?token=).",
        403: NOT_LOCAL,
    },
    "node": {401: "A node token is required (header or ?token=)."},
    "login": {403: NOT_LOCAL},
    "public": {},
}
# What an admin POST, PUT or DELETE without a JSON body must carry (`node_server.access`).
REQUEST_HEADER_PARAMETER = {
    "name": REQUEST_HEADER,
    "in": "header",
    "required": True,
    "schema": {"type": "string", "const": "1"},
    "description": "Proves the request is not a web page's: no page can send it to another "
    "site without a CORS preflight.",
}
WITHOUT_HEADER = f"Neither a JSON body nor {REQUEST_HEADER}: 1."

Mode = Literal["validation", "serialization"]


def schemas(models: Iterable[tuple[type[BaseModel], Mode]]) -> dict[str, Any]:
    """`components.schemas`: each model's JSON Schema under its name, with its `$defs`."""
    collected: dict[str, Any] = {}
    for model, mode in models:
        schema = model.model_json_schema(ref_template=REF, mode=mode)
        for name, definition in {**schema.pop("$defs", {}), model.__name__: schema}.items():
            if collected.setdefault(name, definition) != definition:
                raise ValueError(f"two different schemas are named {name!r}")
    return collected


def parameters(route: Route) -> list[dict[str, Any]]:
    """The route's parameter model as OpenAPI parameters: path ones first, then the query's."""
    in_path = re.findall(r"\{(\w+)\}", route.path)
    schema = {"properties": {}} if route.params is None else route.params.model_json_schema()
    if "$defs" in schema:
        raise ValueError(f"{route.path}: a parameter must not refer to another schema")
    unmodelled = set(in_path) - set(schema["properties"])
    if unmodelled:
        raise ValueError(f"{route.path}: no parameter model field for {sorted(unmodelled)}")
    required = set(schema.get("required", ()))
    described = []
    for name, field_schema in schema["properties"].items():
        where = "path" if name in in_path else "query"
        value = {k: v for k, v in field_schema.items() if k not in ("title", "description")}
        if value.get("default", ...) is None:  # "absent", not a null to send
            del value["default"]
        parameter = {
            "name": name,
            "in": where,
            "required": where == "path" or name in required,
            "schema": value,
        }
        if "description" in field_schema:
            parameter["description"] = field_schema["description"]
        described.append(parameter)
    return sorted(described, key=lambda parameter: parameter["in"] != "path")


def _content(model: type[BaseModel] | None) -> dict[str, Any]:
    schema = {"type": "object"} if model is None else {"$ref": REF.format(model=model.__name__)}
    return {"application/json": {"schema": schema}}


def _json(description: str, model: type[BaseModel] | None) -> dict[str, Any]:
    return {"description": description, "content": _content(model)}


def _operation(route: Route, operation: Operation) -> dict[str, Any]:
    status, description, model = operation.ok
    answers = {**operation.errors, **TOKEN_ANSWERS[route.access]}
    listed = parameters(route)
    if _needs_request_header(route, operation):
        listed.append(REQUEST_HEADER_PARAMETER)
        answers[415] = WITHOUT_HEADER
    responses = {str(status): _json(description, model)}
    for code in sorted(answers):
        responses[str(code)] = _json(answers[code], api_models.Error)
    described: dict[str, Any] = {"summary": operation.summary}
    if listed:
        described["parameters"] = listed
    if operation.body is not None:
        described["requestBody"] = {"required": True, "content": _content(operation.body)}
    described["responses"] = responses
    described["security"] = SECURITY[route.access]
    return described


def _needs_request_header(route: Route, operation: Operation) -> bool:
    unsafe = route.method not in ("GET", "HEAD", "OPTIONS")
    return unsafe and route.access in ("admin", "login") and operation.body is None


def build(routes: Iterable[Route]) -> dict[str, Any]:
    """The document for these routes: those under /api, each of which must have an operation."""
    paths: dict[str, dict[str, Any]] = {}
    models: list[tuple[type[BaseModel], Mode]] = [(api_models.Error, "serialization")]
    for route in routes:
        operation = route.operation
        if not route.path.startswith("/api"):
            continue
        if operation is None:
            raise ValueError(f"{route.method} {route.path} has no operation to describe it")
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, operation)
        if operation.ok[2] is not None:
            models.append((operation.ok[2], "serialization"))
        if operation.body is not None:
            models.append((operation.body, "validation"))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "wspool node_server API",
            "version": "1",
            "description": "Read API (admin token when `admin_token` is set), REST job "
            "submission for nodes (node `auth_tokens` when set). Errors are `{error, detail}`. "
            "Pages are newest first; pass the page's `next_before` as `before` for the next one.",
        },
        "components": {
            "securitySchemes": {
                "admin": {"type": "http", "scheme": "bearer", "description": "admin_token"},
                "node": {"type": "http", "scheme": "bearer", "description": "auth_tokens"},
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "wspool_admin",
                    "description": "set by POST /api/session",
                },
            },
            "schemas": schemas(models),
        },
        "paths": paths,
    }


async def serve(request: web.Request) -> web.Response:
    """GET /api/openapi.json."""
    return web.Response(body=request.app[DOCUMENT], content_type="application/json")
