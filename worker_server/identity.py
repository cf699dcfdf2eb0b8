"""Who a worker is: the `hardware_id` it declares, proven or not.

A welcome's `hardware_id` is the worker's own claim: anyone can send another
worker's. It becomes proven when the handshake carries `worker_token`, the
hex HMAC-SHA256 of the hardware_id under `worker_token_secret`, which only
the operator can compute (`printf %s "$HARDWARE_ID" | openssl dgst -sha256
-hmac "$SECRET"`). A token carries the identity it was made for, so there is
no list of workers to keep; changing the secret revokes every token at once.
The token rides on the handshake (header `X-Worker-Token` or query
`?worker_token=`), so the welcome frame stays as the wire protocol has it.
"""

from __future__ import annotations

import hashlib
import hmac

from aiohttp import web
from pydantic import SecretStr

from shared.errors import Close, CloseConnection

TOKEN_HEADER = "X-Worker-Token"
TOKEN_QUERY = "worker_token"


def presented_token(request: web.Request) -> str | None:
    """The worker token of the handshake, if it carries one."""
    return request.headers.get(TOKEN_HEADER) or request.query.get(TOKEN_QUERY)


def proven(secret: SecretStr | None, hardware_id: str, token: str | None) -> bool:
    """Whether `token` proves `hardware_id`: False without a token or a secret.

    A token that proves nothing is an invalid welcome (3000): the worker
    claimed to be someone it could not show it is.
    """
    if secret is None or token is None:
        return False
    key = secret.get_secret_value().encode()
    # surrogateescape: ids and tokens that were not UTF-8 must not raise here.
    expected = hmac.new(key, hardware_id.encode("utf-8", "surrogateescape"), hashlib.sha256)
    if hmac.compare_digest(expected.hexdigest().encode(), token.encode("utf-8", "surrogateescape")):
        return True
    raise CloseConnection(
        Close.INVALID_WELCOME, "invalid welcome: worker_token does not prove hardware_id"
    )
