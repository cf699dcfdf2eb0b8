"""Schemathesis hooks for `tests/integration/test_openapi_fuzz.py`.

Some rules of the API are beyond what a JSON Schema can state, so the
document can't, and the fuzzer would send bodies that break them as if they
were valid (or count their 413 as a wrong answer to an invalid one):
- a body's size: at most `LOGIN_BODY_BYTES` for the login, `max_message_bytes`
  for a job (413);
- an integer is written as one: JSON Schema reads `2.0` as the integer 2,
  the protocol refuses it (docs/protocol.md; `2.5` stays a case the server
  must refuse);
- a frame is refused if reading it would change it (an integer beyond 64
  bits, a duplicate key, anywhere), and an object (`epoch_challenge`) is
  stored and forwarded as sent: no NUL, at most 32 levels deep and
  `max_object_bytes` as JSON.
Bodies that break one of these are not sent; whether one does is asked of
the server's own code and settings, so each rule stays written once.
"""

from __future__ import annotations

import json
from typing import Any

import schemathesis
from pydantic import BaseModel

from node_server.access import LOGIN_BODY_BYTES
from node_server.settings import NodeServerSettings
from shared.codec import check_size, parse
from shared.errors import ProtocolError
from shared.protocol import JsonObject, NodeJob

DEFAULTS = NodeServerSettings.model_fields
BODY_BYTES = {"/api/session": LOGIN_BODY_BYTES, "/api/jobs": DEFAULTS["max_message_bytes"].default}
MAX_OBJECT_BYTES = DEFAULTS["max_object_bytes"].default


class _Frame(BaseModel):
    """Any frame: `parse` still refuses one that reading would change."""


class _Holder(BaseModel):
    value: JsonObject


def _refused(model: type[BaseModel], value: Any) -> bool:
    try:
        parse(model, json.dumps(value))
    except ProtocolError:
        return True
    except (TypeError, ValueError):  # not JSON: not sent as JSON either
        return False
    return False


def _storable(value: dict[str, Any]) -> bool:
    if _refused(_Holder, {"value": value}):  # first: its size is only known of a valid one
        return False
    try:
        check_size("value", value, MAX_OBJECT_BYTES)
    except ProtocolError:
        return False
    return True


def _size(body: Any) -> int:
    """Bytes on the wire: raw ones as they are, JSON ASCII-escaped (the longest spelling)."""
    if isinstance(body, bytes):
        return len(body)
    try:
        return len(json.dumps(body))
    except (TypeError, ValueError):  # a value not sent as JSON: no size to tell
        return 0


@schemathesis.hook
def filter_body(context: schemathesis.HookContext, body: Any) -> bool:
    path = context.operation.path if context.operation is not None else ""
    if _size(body) > BODY_BYTES.get(path, LOGIN_BODY_BYTES):
        return False
    if not isinstance(body, dict):
        return True
    if any(isinstance(value, float) and value.is_integer() for value in body.values()):
        return False
    if _refused(_Frame, body):
        return False
    # The declared objects only: the protocol ignores (and never stores) the others.
    declared = [body[name] for name in NodeJob.model_fields if isinstance(body.get(name), dict)]
    return all(_storable(value) for value in declared)
