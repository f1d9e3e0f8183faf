"""Device cookies (OWASP "Slow Down Online Guessing Attacks with Device Cookies").

After a successful login the response carries a signed cookie binding the
account that authenticated (the exact spelling typed for it, which names one
account under any lookup) and a random nonce. Later attempts for that same
account from that device are counted in the device's own bucket, so an
attacker who locks the account from elsewhere, or sprays other accounts from
the owner's network, does not lock out its owner's known device. A cookie
earned on one account never opens a bucket for another, and every device of
one account also counts in one shared bucket, so cookies minted elsewhere
(two user tables behind one scope, say) add one budget, not one each.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from flask import Flask, current_app, request
from itsdangerous import BadData, URLSafeTimedSerializer
from werkzeug.sansio.response import Response

from .cookies import set_cookie

COOKIE_NAME = "lockout_device"
#: How long a device stays known after its last successful login.
MAX_AGE_SECONDS = 180 * 86400
_SALT = "flask-lockout.device-cookie"


def _serializer(app: Flask) -> URLSafeTimedSerializer:
    fallbacks = app.config.get("SECRET_KEY_FALLBACKS") or []
    keys: list[Any] = [*fallbacks, app.config["SECRET_KEY"]]
    # itsdangerous signs with the last key and accepts all of them.
    return URLSafeTimedSerializer(keys, salt=_SALT)


def _account_tags(account: str) -> list[str]:
    """The account as cookies name it, under the current secret first and
    then each of ``SECRET_KEY_FALLBACKS``: keyed, so a cookie does not reveal
    a hash anyone could match against a list of logins."""
    config = current_app.config
    secrets_ = [config["SECRET_KEY"], *(config.get("SECRET_KEY_FALLBACKS") or [])]
    return [
        hmac.new(str(key).encode(), account.encode(), hashlib.sha256).hexdigest()[:32]
        for key in secrets_
    ]


def device_nonce(account: str) -> str | None:
    """The nonce of a valid device cookie for ``account``, else None.

    ``account`` binds the scope and every account key of the request with
    the exact spelling typed for it (see ``attempts.reserve``). A cookie for
    another account or scope, tampered, expired or signed with another salt
    counts as no cookie.
    """
    raw = request.cookies.get(COOKIE_NAME)
    if not raw or len(raw) > 1024:
        return None
    try:
        payload = _serializer(current_app).loads(raw, max_age=MAX_AGE_SECONDS)
    except BadData:
        return None
    if not isinstance(payload, dict) or payload.get("a") not in _account_tags(account):
        return None
    nonce = payload.get("n")
    return nonce if isinstance(nonce, str) and nonce.isalnum() else None


def issue_device_cookie(response: Response, account: str) -> None:
    """Mark this device as known for ``account``."""
    nonce = device_nonce(account) or secrets.token_hex(16)
    tag = _account_tags(account)[0]
    value = _serializer(current_app).dumps({"a": tag, "n": nonce})
    set_cookie(response, COOKIE_NAME, str(value), max_age=MAX_AGE_SECONDS)
