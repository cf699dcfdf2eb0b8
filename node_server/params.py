"""Query and path parameters of the HTTP API, checked once with clear 400s."""

from __future__ import annotations

import re
import uuid

from aiohttp import web

from shared.protocol import MAX_INT64

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
DIGEST = re.compile(r"[0-9a-f]{32}")
WINDOW = re.compile(r"^(\d{1,7})([smhd])$")
WINDOW_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_WINDOW_SECONDS = 90 * 86400


class ApiError(Exception):
    """A client-visible HTTP error; the API middleware turns it into JSON."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail


def invalid(name: str, detail: str) -> ApiError:
    return ApiError(400, "invalid_parameter", f"{name}: {detail}")


def integer(
    request: web.Request, name: str, default: int | None, low: int = 0, high: int = MAX_INT64
) -> int | None:
    """An integer query parameter in low..high, or `default` when absent."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    return _to_int(name, raw, low, high)


def path_integer(request: web.Request, name: str) -> int:
    value = _to_int(name, request.match_info[name], 0, MAX_INT64)
    assert value is not None
    return value


def _to_int(name: str, raw: str, low: int, high: int) -> int:
    if not re.fullmatch(r"-?\d{1,20}", raw):
        raise invalid(name, f"expected an integer, got {raw[:40]!r}")
    value = int(raw)
    if not low <= value <= high:
        raise invalid(name, f"must be between {low} and {high}")
    return value


def limit(request: web.Request) -> int:
    value = integer(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    assert value is not None
    return value


def boolean(request: web.Request, name: str) -> bool | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise invalid(name, f"expected true or false, got {raw[:40]!r}")


def task_id(request: web.Request) -> uuid.UUID:
    raw = request.match_info["task_id"]
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise invalid("task_id", f"expected a UUID, got {raw[:40]!r}") from None


def challenge_digest(request: web.Request) -> str | None:
    """Optional `challenge_digest`: 32 lowercase hex characters, as `POST /api/jobs` returns."""
    raw = request.query.get("challenge_digest")
    if raw is None or raw == "":
        return None
    if DIGEST.fullmatch(raw) is None:
        raise invalid("challenge_digest", f"expected 32 hex characters, got {raw[:40]!r}")
    return raw


def window_seconds(request: web.Request, default: str = "1h") -> int:
    """A time window like `30s`, `15m`, `1h`, `7d` (at most 90 days), in seconds."""
    raw = request.query.get("window") or default
    match = WINDOW.fullmatch(raw)
    if match is None:
        raise invalid("window", f"expected a number and a unit s, m, h or d, got {raw[:40]!r}")
    seconds = int(match[1]) * WINDOW_UNITS[match[2]]
    if not 1 <= seconds <= MAX_WINDOW_SECONDS:
        raise invalid("window", "must be between 1s and 90d")
    return seconds
