"""Who may call node_server's HTTP routes, and the dashboard's login.

Access levels (each route's is listed in `node_server.routes`):
- `admin`: with `admin_token` set, the token as a bearer header or the login
  cookie; without, loopback peers only, never the open internet.
- `login`: the dashboard page and its login; anyone may see the page and try
  the token when one is set (the page holds no data), loopback only otherwise.
- `node`: one of the nodes' `auth_tokens` when set; without, loopback peers
  only, as the node websocket (`node_server.ws.node_refusal`).
- `public`: anyone.

A browser can't attach a header to a page load, and a token in a URL ends up
in history, logs and screenshots. So the dashboard asks for the token once;
`POST /api/session` checks it and sets a cookie holding a digest of the token
(never the token itself). The cookie is HttpOnly (page scripts can't read it)
and SameSite=Strict (no other site's page can send a request that carries
it). Changing `admin_token` ends every session.
"""

from __future__ import annotations

import hashlib
import hmac

from aiohttp import web
from pydantic import SecretStr, ValidationError

from node_server import api_models
from node_server.api import Handler, error_response, json_response
from node_server.params import ApiError
from node_server.rest import json_body
from node_server.ws import SETTINGS, node_refusal
from shared.websocket.access import (
    authorized,
    bearer,
    from_loopback,
    token_matches,
    unauthorized,
)

COOKIE = "wspool_admin"
SESSION_SECONDS = 12 * 3600
LOGIN_BODY_BYTES = 1024


def guarded(access: str, handler: Handler) -> Handler:
    """The handler behind the check its access level asks for."""

    async def check(request: web.Request) -> web.StreamResponse:
        settings = request.app[SETTINGS]
        admin_token = settings.admin_token
        if access in ("admin", "login") and admin_token is None and not from_loopback(request):
            return error_response(
                403, "forbidden", "set admin_token to reach the admin API from elsewhere"
            )
        if access == "admin" and admin_token is not None:
            if not admin_authorized(request, admin_token):
                return unauthorized()
        if access == "node":
            if not authorized(request, settings.auth_tokens):
                return unauthorized()
            if (refusal := node_refusal(request, settings)) is not None:
                return refusal
        return await handler(request)

    return check


def admin_authorized(request: web.Request, token: SecretStr) -> bool:
    """The admin token as a bearer header (never in the URL), or the login cookie."""
    if token_matches(bearer(request), [token]):
        return True
    cookie = request.cookies.get(COOKIE, "")
    return hmac.compare_digest(cookie.encode(), _session_value(token).encode())


def _session_value(token: SecretStr) -> str:
    key = token.get_secret_value().encode("utf-8", "surrogateescape")
    return hmac.new(key, b"wspool dashboard session", hashlib.sha256).hexdigest()


async def log_in(request: web.Request) -> web.Response:
    """POST /api/session {"token": ...}: the session cookie for the admin token, else 401."""
    settings = request.app[SETTINGS]
    if settings.admin_token is None:
        raise ApiError(404, "not_found", "no admin_token is set: loopback needs no login")
    body = await json_body(request, LOGIN_BODY_BYTES, settings.http_idle_timeout_seconds)
    if not token_matches(_token_field(body), [settings.admin_token]):
        raise ApiError(401, "unauthorized", "wrong admin token")
    response = json_response(api_models.Session(status="logged_in"))
    response.set_cookie(
        COOKIE,
        _session_value(settings.admin_token),
        max_age=SESSION_SECONDS,
        path="/",
        httponly=True,
        samesite="Strict",
    )
    return response


async def log_out(_request: web.Request) -> web.Response:
    """DELETE /api/session: the browser forgets the cookie."""
    response = json_response(api_models.Session(status="logged_out"))
    response.del_cookie(COOKIE, path="/")
    return response


def _token_field(body: bytes) -> str:
    try:
        return api_models.Login.model_validate_json(body).token
    except ValidationError:
        raise ApiError(400, "invalid_message", 'send {"token": "<admin token>"}') from None
