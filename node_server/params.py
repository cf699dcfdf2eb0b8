"""The path and query parameters of the HTTP API, one pydantic model per operation.

Each model is both the check (`parse`: a clear 400 for the first bad value)
and the description (`node_server.openapi` turns its JSON Schema into the
operation's parameters): a field whose name is in the route's path is a path
parameter, any other a query parameter. They must agree on every text a
client can send, so the types below read the text as the document says and
nothing looser: integers are ASCII digits (no `1_000`, ` 5` or `5.0`), a
present value is never taken for an absent one (`?limit=` is a 400, like
`?limit=x`), and an optional parameter has no `null` to send.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from aiohttp import web
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from node_server import api_models
from shared.routes import ROUTES

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
FLEET_MAX_LIMIT = 100
MAX_QUERY_CHARS = 255  # the longest id a welcome may carry
DEFAULT_PEEK, MAX_PEEK = 10, 100
DEFAULT_REQUEUE, MAX_REQUEUE = 1000, 10_000
WINDOW_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_WINDOW_SECONDS = 90 * 86400


class ApiError(Exception):
    """A client-visible HTTP error; the API middleware turns it into JSON."""

    def __init__(
        self, status: int, error: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers or {}  # e.g. Retry-After on a 503


def _refused(expected: str, value: str) -> PydanticCustomError:
    return PydanticCustomError(
        "invalid_parameter",
        "expected {expected}, got {got}",
        {"expected": expected, "got": repr(value[:40])},
    )


def _integer_text(value: Any) -> Any:
    if isinstance(value, str) and not re.fullmatch(r"[+-]?[0-9]+", value):
        raise _refused("an integer", value)
    return value


HYPHENATED_UUID = re.compile(r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")


def _hyphenated(value: Any) -> Any:
    """The form `format: uuid` names; `uuid.UUID` would also read `{...}`, `urn:uuid:`, bare hex."""
    if isinstance(value, str) and HYPHENATED_UUID.fullmatch(value) is None:
        raise _refused("a UUID", value)
    return value


def at_most(n: int) -> str:
    """A regular expression for the decimal numbers 1..n, written without leading zeros."""
    digits = str(n)
    options = []
    if len(digits) > 1:  # fewer digits than n
        options.append("[1-9]" + _digits(0, len(digits) - 2))
    for i, digit in enumerate(digits):  # as many: n's first i digits, then a smaller one
        low, high = (1 if i == 0 else 0), int(digit) - 1
        if high >= low:
            smaller = str(low) if low == high else f"[{low}-{high}]"
            rest = len(digits) - i - 1
            options.append(digits[:i] + smaller + _digits(rest, rest))
    return "|".join([*options, digits])


def _digits(least: int, most: int) -> str:
    """A regular expression for `least` to `most` digits."""
    if most == 0:
        return ""
    if least == most:
        return "[0-9]" if most == 1 else f"[0-9]{{{most}}}"
    return f"[0-9]{{{least},{most}}}"


# Exactly 1s..90d, so that the document's pattern is the whole rule and not only its syntax.
WINDOW = re.compile(
    "^0*(?:{})$".format(
        "|".join(
            f"(?:{at_most(MAX_WINDOW_SECONDS // seconds)}){unit}"
            for unit, seconds in WINDOW_UNITS.items()
        )
    )
)


def _window_seconds(value: Any) -> int:
    if not isinstance(value, str) or WINDOW.fullmatch(value) is None:
        raise _refused("a number and a unit s, m, h or d, from 1s to 90d", str(value))
    return int(value[:-1]) * WINDOW_UNITS[value[-1]]


# After the bounds in each `Annotated`, or the bounds would be missing from the schema.
DIGITS = BeforeValidator(_integer_text)
Int64 = Annotated[api_models.Int64, DIGITS]
TaskId = Annotated[uuid.UUID, BeforeValidator(_hyphenated)]
# Sent as text like 30s, 15m, 1h, 7d; held as seconds.
WindowSeconds = Annotated[
    int,
    BeforeValidator(_window_seconds),
    WithJsonSchema({"type": "string", "pattern": WINDOW.pattern}),
]
# An optional parameter is absent or a value: a URL has no `null` to send.
Unset = SkipJsonSchema[None]


class Params(BaseModel):
    # Unknown parameters are left alone: `?token=` is a node's, a cache buster a browser's.
    model_config = ConfigDict(extra="ignore", frozen=True)


class Paged(Params):
    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT, description="Page size."), DIGITS] = (
        DEFAULT_LIMIT
    )


class TaskParams(Params):
    task_id: TaskId


class JobsParams(Paged):
    before: Int64 | Unset = Field(None, description="Cursor: a block height (exclusive).")


class TaskSolutionsParams(TaskParams, Paged):
    before: Int64 | Unset = Field(
        None, description="Cursor: `next_before` of the previous page (an id)."
    )


class RetireAboveParams(Params):
    above_height: Annotated[Int64, Field(description="Retire the jobs above this height.")]


class WorkersParams(Paged):
    connected: bool | Unset = Field(None, description="Only open (true) or closed (false).")
    before: Int64 | Unset = Field(
        None, description="Cursor: `next_before` of the previous page (an id)."
    )


class HeightSolutionsParams(Paged):
    block_height: Int64
    min_target: Int64 = Field(0, description="Only solutions with solution_target >= this.")
    after: Int64 = Field(0, description="Cursor: solutions with a larger id.")
    challenge_digest: api_models.Digest | Unset = Field(
        None,
        description="Only if the height's job has this challenge (as `POST /api/jobs` returns).",
    )


class WorkerStatsParams(Params):
    hardware_id: str
    window: WindowSeconds = Field(
        "1h", validate_default=True, description="Window like 30s, 15m, 1h, 7d (at most 90d)."
    )


class FleetParams(Params):
    q: Annotated[
        str,
        Field(max_length=MAX_QUERY_CHARS, description="Text to find."),
        AfterValidator(str.strip),
    ] = ""
    limit: Annotated[
        int, Field(ge=1, le=FLEET_MAX_LIMIT, description="Most workers answered."), DIGITS
    ] = DEFAULT_LIMIT


class PeekParams(Params):
    peek: Annotated[int, Field(ge=0, le=MAX_PEEK, description="Per queue."), DIGITS] = DEFAULT_PEEK


class RequeueParams(Params):
    # Any text, so that an unknown queue is a 404 (`dead_letters`); the document lists the known.
    queue: str = Field(json_schema_extra={"enum": sorted(ROUTES)})
    limit: Annotated[int, Field(ge=1, le=MAX_REQUEUE, description="Most moved."), DIGITS] = (
        DEFAULT_REQUEUE
    )


P = TypeVar("P", bound=Params)


def parse(model: type[P], request: web.Request) -> P:
    """The request's path and query parameters as `model`, or a 400 naming the first bad one."""
    try:
        # The first of repeated query parameters counts; the path's own values win over the query's.
        return model.model_validate({**request.query, **request.match_info})
    except ValidationError as error:
        raise ApiError(400, "invalid_parameter", _detail(model, error)) from None


def _detail(model: type[Params], error: ValidationError) -> str:
    """`name: problem`; a number out of range names the whole range, as the document does."""
    first = error.errors(include_url=False)[0]
    name = str(first["loc"][0])  # then, for an optional one, pydantic's name of the type
    if first["type"] in ("greater_than_equal", "less_than_equal"):
        bounds = model.model_json_schema()["properties"][name]
        return f"{name}: must be between {bounds['minimum']} and {bounds['maximum']}"
    return f"{name}: {first['msg']}"


def with_params(
    model: type[P] | None,
    handler: Callable[..., Awaitable[web.StreamResponse]],
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The handler, called with its parsed parameters as a second argument when it has any."""
    if model is None:
        return handler

    async def parsed(request: web.Request) -> web.StreamResponse:
        return await handler(request, parse(model, request))

    return parsed
