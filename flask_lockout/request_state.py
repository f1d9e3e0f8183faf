"""Flask-Lockout's state for the request being handled.

The state is kept in the request's WSGI environ, not in ``g``: Flask shares
one app context, and so one ``g``, among the requests pushed inside it (a
batch endpoint's sub-requests, tests under ``with app.app_context()``), and
a key read, a guard or a rate-limit answer of one request must never count
for another.
"""

from __future__ import annotations

from typing import Any

from flask import Request, request

ENVIRON_KEY = "flask_lockout"


def this_request() -> Request:
    """The request being handled, taken out of Flask's ``request`` proxy
    once (as Flask's "Notes On Proxies" show): every attribute read through
    the proxy looks the context up again, and a guarded request reads dozens.
    """
    found: Request = request._get_current_object()  # type: ignore[attr-defined]
    return found


def request_state(req: Request | None = None) -> dict[str, Any]:
    """This request's own dict (of ``req``, the current request by default),
    made on first use."""
    environ = (req if req is not None else request).environ
    state: dict[str, Any] | None = environ.get(ENVIRON_KEY)
    if state is None:
        state = environ[ENVIRON_KEY] = {}
    return state


def challenge_required() -> bool:
    """The scope is under a surge and this attempt, from a device without a
    cookie, has not passed the view's challenge."""
    found = request_state()
    return bool(found.get("challenge_required")) and not found.get("challenge_passed")
