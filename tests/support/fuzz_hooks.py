"""Schemathesis hooks for `tests/integration/test_openapi_fuzz.py` (loaded by file path).

Two rules of the protocol (README, "Protocol (v1)") are beyond what a JSON
Schema can state, so the document can't, and the fuzzer would send bodies
that break them as if they were valid:
- an integer is written as one: JSON Schema reads `2.0` as the integer 2,
  the protocol refuses it (`2.5` stays a case the server must refuse);
- an object (`epoch_challenge`) is stored and forwarded as sent: no NUL, at
  most 32 levels deep and `max_object_bytes` as JSON, integers within 64 bits.
Bodies that break only these are not sent; which do is asked of the
protocol's own parser, so the rules stay written once.
"""

# No `from __future__ import annotations`: loaded from a file, not as a module, this one's
# annotations could not be resolved when pydantic builds `_Holder`.
import json
from typing import Any

import schemathesis
from pydantic import BaseModel

from shared.codec import check_size, parse
from shared.errors import ProtocolError
from shared.protocol import JsonObject
from shared.settings import WebsocketServerSettings

MAX_OBJECT_BYTES = WebsocketServerSettings.model_fields["max_object_bytes"].default


class _Holder(BaseModel):
    value: JsonObject


def _storable(value: dict[str, Any]) -> bool:
    try:
        parse(_Holder, json.dumps({"value": value}))  # as the fuzzer sends it
        check_size("value", value, MAX_OBJECT_BYTES)
    except ProtocolError:
        return False
    return True


@schemathesis.hook
def filter_body(_context: schemathesis.HookContext, body: Any) -> bool:
    if not isinstance(body, dict):
        return True
    if any(isinstance(value, float) and value.is_integer() for value in body.values()):
        return False
    objects = [value for value in body.values() if isinstance(value, dict)]
    return all(_storable(value) for value in objects)
