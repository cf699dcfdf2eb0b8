"""Which web pages may reach us: the `Origin` and `Host` a browser sends.

A browser lets any page it opens send requests to any address it can reach,
the operator's loopback and office network included, and attaches what the
page asks for. Two headers tell those requests apart, and the page can set
neither: `Origin` (the page's scheme, host and port; browsers send it on
every websocket handshake and every POST, PUT and DELETE) and `Host` (the
name the page used: after DNS rebinding, the attacker's name, though the
address is ours). Clients that are not browsers send no `Origin`.

- A websocket handshake with an `Origin` not in `allowed_origins` is refused
  (403): no page serves a websocket client from our ports, so every `Origin`
  is a foreign page unless an operator listed it.
- A POST, PUT or DELETE likewise, except a page of our own: its `Origin` is
  the `Host` it was sent to, and that `Host` is one of `own_hosts` (the
  dashboard's names; a rebound name never is).
"""

from __future__ import annotations

from collections.abc import Collection

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def host_allowed(request: web.Request, hosts: Collection[str]) -> bool:
    """Whether the request's `Host` is one of `hosts`: a name (any port) or `name:port`."""
    name, port = split_host(request.headers.get("Host", ""))
    return bool(name) and (name in hosts or f"{name}:{port}" in hosts)


def split_host(host: str) -> tuple[str, str]:
    """`Host` as (name, port), the name in lower case without a trailing dot; port "" if none."""
    host = host.strip().lower()
    if host.startswith("["):  # an IPv6 address: "[::1]" or "[::1]:8021"
        name, _, rest = host.partition("]")
        name, port = name + "]", rest.removeprefix(":")
    elif host.count(":") > 1:  # an IPv6 address must be in brackets
        return "", ""
    else:
        name, _, port = host.partition(":")
    return name.rstrip("."), port


def normal_origin(origin: str) -> str:
    """An origin as browsers send it: lower case, no trailing slash."""
    return origin.strip().lower().rstrip("/")


def origin_refused(
    request: web.Request, origins: Collection[str], own_hosts: Collection[str] = ()
) -> str | None:
    """Why the request's `Origin` is refused, or None when it has none or it is allowed."""
    origin = request.headers.get("Origin")
    if origin is None or normal_origin(origin) in origins:
        return None
    scheme, _, netloc = normal_origin(origin).partition("://")
    own_page = netloc == request.headers.get("Host", "").strip().lower()
    if own_hosts and scheme in ("http", "https") and own_page and host_allowed(request, own_hosts):
        return None
    return f"Origin {origin[:200]!r} is not in allowed_origins"


def forbidden(error: str, detail: str) -> web.Response:
    return web.json_response({"error": error, "detail": detail}, status=403)


def refuse_foreign_origins(origins: Collection[str], own_hosts: Collection[str]) -> Middleware:
    """Middleware: a POST, PUT or DELETE from a page not allowed is 403, unserved."""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method not in SAFE_METHODS:
            refusal = origin_refused(request, origins, own_hosts)
            if refusal is not None:
                return forbidden("forbidden_origin", refusal)
        return await handler(request)

    return check
