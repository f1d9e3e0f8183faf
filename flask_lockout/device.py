"""Device cookies (OWASP "Slow Down Online Guessing Attacks with Device Cookies").

After a successful login the response carries a signed cookie binding the
account that authenticated (the exact spelling typed for it, which names one
account under any lookup) and a random nonce. Later attempts for that same
account from that device are counted in the device's own bucket, so an
attacker who locks the account from elsewhere, or sprays other accounts from
the owner's network, does not lock out its owner's known device. A cookie
earned on one account never opens a bucket for another.
"""

from __future__ import annotations

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


def device_nonce(account: str) -> str | None:
    """The nonce of a valid device cookie for ``account`` (a spelling digest
    from :func:`flask_lockout.keys.spelling`), else None.

    A cookie for another account, tampered, expired or signed with another
    salt counts as no cookie.
    """
    raw = request.cookies.get(COOKIE_NAME)
    if not raw or len(raw) > 1024:
        return None
    try:
        payload = _serializer(current_app).loads(raw, max_age=MAX_AGE_SECONDS)
    except BadData:
        return None
    if not isinstance(payload, dict) or payload.get("a") != account:
        return None
    nonce = payload.get("n")
    return nonce if isinstance(nonce, str) and nonce.isalnum() else None


def issue_device_cookie(response: Response, account: str) -> None:
    """Mark this device as known for ``account``."""
    nonce = device_nonce(account) or secrets.token_hex(16)
    value = _serializer(current_app).dumps({"a": account, "n": nonce})
    set_cookie(response, COOKIE_NAME, str(value), max_age=MAX_AGE_SECONDS)
