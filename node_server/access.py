"""Who may call node_server's HTTP routes, and the dashboard's login.

Access levels (each route's is listed in `node_server.routes`):
- `admin`: with `admin_token` set, the token as a bearer header or the login
  cookie; without, loopback peers only, never the open internet.
- `login`: the dashboard page and its login; anyone may see the page and try
  the token when one is set (the page holds no data), loopback only otherwise.
- `node`: one of the nodes' `auth_tokens` when set.
- `public`: anyone.

Every `admin` and `login` route also refuses what a web page open in the
operator's browser could send it (`browser_refusal`): a `Host` not in
`admin_allowed_hosts` (a DNS-rebound page reads with the attacker's name, 403),
and a POST, PUT or DELETE that is neither `application/json` nor carries
`X-Wspool-Request: 1` (415): a page can send either to another site only after
a CORS preflight, which nothing here answers. A page's `Origin` is checked for
every service by `shared.websocket.origin`.

A browser can't attach a header to a page load, and a token in a URL ends up
in history, logs and screenshots. So the dashboard asks for the token once;
`POST /api/session` checks it and sets a cookie naming a new session
(`node_server.sessions`: random, server-side, ended by its logout, at most 12
hours; failed logins limited per address). The cookie is HttpOnly (page
scripts can't read it), SameSite=Strict (no other site's page can send a
request that carries it) and, with `admin_cookie_secure`, Secure. Changing
`admin_token` ends every session.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import SecretStr, ValidationError

from node_server import api_models
from node_server.api import Handler, error_response, json_response, outage_response
from node_server.params import ApiError
from node_server.rest import json_body
from node_server.sessions import (
    LOGIN_ATTEMPTS,
    SESSION_SECONDS,
    close_session,
    open_session,
    session_valid,
)
from node_server.settings import NodeServerSettings
from node_server.ws import SETTINGS, node_refusal
from shared.db import POOL
from shared.websocket.access import (
    authorized,
    bearer,
    from_loopback,
    token_matches,
    unauthorized,
)
from shared.websocket.origin import SAFE_METHODS, forbidden, host_allowed

COOKIE = "wspool_admin"
LOGIN_BODY_BYTES = 1024
# What a page can't send another site without a CORS preflight; the dashboard sends it.
REQUEST_HEADER = "X-Wspool-Request"


def guarded(access: str, handler: Handler) -> Handler:
    """The handler behind the check its access level asks for."""

    async def check(request: web.Request) -> web.StreamResponse:
        settings = request.app[SETTINGS]
        admin_token = settings.admin_token
        if access in ("admin", "login") and (refusal := browser_refusal(request, settings)):
            return refusal
        if access in ("admin", "login") and admin_token is None and not from_loopback(request):
            return error_response(
                403, "forbidden", "set admin_token to reach the admin API from elsewhere"
            )
        if access == "admin" and admin_token is not None:
            try:
                if not await admin_authorized(request, admin_token):
                    return unauthorized()
            except Exception as error:  # the sessions are in Postgres
                if (outage := outage_response(request, error)) is None:
                    raise
                return outage
        if access == "node":
            if not authorized(request, settings.auth_tokens):
                return unauthorized()
            if (refusal := node_refusal(request, settings)) is not None:
                return refusal
        return await handler(request)

    return check


def browser_refusal(request: web.Request, settings: NodeServerSettings) -> web.Response | None:
    """The answer to a request only a foreign web page would send, or None."""
    if not host_allowed(request, settings.admin_allowed_hosts):
        host = request.headers.get("Host", "")[:200]
        return forbidden("forbidden_host", f"Host {host!r} is not in admin_allowed_hosts")
    if request.method in SAFE_METHODS or request.content_type == "application/json":
        return None
    if request.headers.get(REQUEST_HEADER) == "1":
        return None
    return error_response(
        415,
        "unsupported_media_type",
        f"send the body as application/json, or the header {REQUEST_HEADER}: 1",
    )


async def admin_authorized(request: web.Request, token: SecretStr) -> bool:
    """The admin token as a bearer header (never in the URL), or a session's cookie."""
    if token_matches(bearer(request), [token]):
        return True
    cookie = request.cookies.get(COOKIE)
    return bool(cookie) and await session_valid(request.app[POOL], token, cookie)


async def log_in(request: web.Request) -> web.Response:
    """POST /api/session {"token": ...}: a new session's cookie for the admin token, else
    401; 429 after too many wrong tokens from the caller's address."""
    settings = request.app[SETTINGS]
    if settings.admin_token is None:
        raise ApiError(404, "not_found", "no admin_token is set: loopback needs no login")
    attempts = request.app[LOGIN_ATTEMPTS]
    if (wait := attempts.retry_after(request.remote)) is not None:
        response = error_response(429, "rate_limited", f"too many wrong tokens; retry in {wait} s")
        response.headers["Retry-After"] = str(wait)
        return response
    body = await json_body(request, LOGIN_BODY_BYTES, settings.http_idle_timeout_seconds)
    if not token_matches(_token_field(body), [settings.admin_token]):
        attempts.failed(request.remote)
        raise ApiError(401, "unauthorized", "wrong admin token")
    response = json_response(api_models.Session(status="logged_in"))
    response.set_cookie(
        COOKIE,
        await open_session(request.app[POOL], settings.admin_token),
        max_age=SESSION_SECONDS,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=True if settings.admin_cookie_secure else None,
    )
    return response


async def log_out(request: web.Request) -> web.Response:
    """DELETE /api/session: the session ends (its cookie opens nothing from now on) and
    the browser forgets the cookie."""
    admin_token = request.app[SETTINGS].admin_token
    if admin_token is not None:
        await close_session(request.app[POOL], admin_token, request.cookies.get(COOKIE, ""))
    response = json_response(api_models.Session(status="logged_out"))
    response.del_cookie(COOKIE, path="/")
    return response


def _token_field(body: bytes) -> str:
    try:
        return api_models.Login.model_validate_json(body).token
    except ValidationError:
        raise ApiError(400, "invalid_message", 'send {"token": "<admin token>"}') from None
