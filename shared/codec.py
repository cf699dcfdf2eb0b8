"""JSON at the edge: one frame into the model its `type` names, and models back out.

Everything a client, RabbitMQ or Kafka hands us is decoded here into the
typed models of `shared.protocol`; a frame that reading would change
(`shared.verbatim`) or that fails validation is a `ProtocolError` naming the
first problem, answered to the client as an error frame.
"""

from __future__ import annotations

import typing
import uuid
from typing import Annotated, Any, Generic, Literal, TypeVar

import orjson
from pydantic import BaseModel, Discriminator, Tag, TypeAdapter, ValidationError

from shared import verbatim
from shared.errors import ErrorCode, ProtocolError


def describe(error: ValidationError, skip: int = 0) -> str:
    """First validation problem as `field.path: message`, for error frames.

    `skip` drops leading path parts that are not the client's (a union's tag).
    """
    first = error.errors(include_url=False)[0]
    location = ".".join(str(part) for part in first["loc"][skip:])
    return f"{location}: {first['msg']}" if location else first["msg"]


M = TypeVar("M", bound=BaseModel)


def _json_object(data: bytes | str, *, verbatim_check: bool = True) -> dict[str, Any]:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "message must be a JSON object")
    # Objects are stored and forwarded as sent, so reading them must not change them.
    problem = verbatim.changed(data, value) if verbatim_check else None
    if problem is not None:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, problem)
    return value


def parse(model: type[M], data: bytes | str) -> M:
    """Decode one JSON frame into `model`, or raise `ProtocolError`."""
    value = _json_object(data)
    try:
        return model.model_validate(value)
    except ValidationError as error:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, describe(error)) from None


def parse_internal(model: type[M], data: bytes | str) -> M:
    """`parse` for what our own services wrote (AMQP bodies, Kafka records).

    Still validated, so a foreign or damaged message is refused (and
    dead-lettered) alone; the verbatim check is skipped: the edge that first
    read the client's objects made it, and `encode` writes them back as read.
    """
    value = _json_object(data, verbatim_check=False)
    try:
        return model.model_validate(value)
    except ValidationError as error:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, describe(error)) from None


def type_tag(model: type[BaseModel]) -> str:
    """The `type` value that names `model` on the wire (its `Literal`)."""
    annotation = model.model_fields["type"].annotation
    for option in (annotation, *typing.get_args(annotation)):
        if typing.get_origin(option) is Literal:
            return str(typing.get_args(option)[0])
    raise TypeError(f"{model.__name__}.type is not a Literal")


class Frames(Generic[M]):
    """The frames one role accepts: a union of models told apart by `type`.

    A frame without a `type` (or with one this role does not know) is judged
    by the `default` model, as before there was a union: untyped frames keep
    their meaning, and an unknown type is refused by the default model's own
    error (`type: Input should be 'job'`).
    """

    def __init__(self, models: typing.Iterable[type[M]], default: type[M]) -> None:
        self.models = {type_tag(model): model for model in models}
        self.default = type_tag(default)
        if self.default not in self.models:
            raise ValueError(f"default {default.__name__} is not one of the models")
        members = tuple(Annotated[model, Tag(tag)] for tag, model in self.models.items())
        union = Annotated[typing.Union[members], Discriminator(self._tag)]  # noqa: UP007
        self._adapter: TypeAdapter[M] = TypeAdapter(union)

    def _tag(self, value: Any) -> str:
        kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
        return kind if isinstance(kind, str) and kind in self.models else self.default

    def parse(self, data: bytes | str) -> M:
        """Decode one JSON frame into the model its `type` names, or raise `ProtocolError`."""
        value = _json_object(data)
        try:
            return self._adapter.validate_python(value)
        except ValidationError as error:
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, describe(error, skip=1)) from None


def check_size(name: str, value: dict[str, Any], limit: int) -> None:
    """Refuse an object whose JSON is larger than `limit` bytes (what we would store)."""
    size = len(orjson.dumps(value))
    if size > limit:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE, f"{name}: larger than {limit} bytes ({size})"
        )


def encode(model: BaseModel) -> bytes:
    """A message or record as JSON: the same bytes as `model_dump(mode="json")` would
    give for these models (UUIDs, numbers, strings, JSON objects, nested records),
    without building the intermediate dict."""
    return orjson.dumps(model.__dict__, default=_fields)


def _fields(value: Any) -> dict[str, Any] | str:
    if isinstance(value, BaseModel):
        return value.__dict__
    if isinstance(value, uuid.UUID):  # a subclass orjson doesn't know (asyncpg's)
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
