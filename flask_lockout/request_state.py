"""Flask-Lockout's state for the request being handled, and the request and
app themselves without a proxy lookup.

The state is kept in the request's WSGI environ, not in ``g``: Flask shares
one app context, and so one ``g``, among the requests pushed inside it (a
batch endpoint's sub-requests, tests under ``with app.app_context()``), and
a key read, a guard or a rate-limit answer of one request must never count
for another.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Request

# The context variables behind ``request`` and ``current_app`` (Flask 2.2+):
# an attribute through those proxies costs about 1 µs, and a refusal made
# dozens of them.
from flask.globals import _cv_app, _cv_request

ENVIRON_KEY = "flask_lockout"


def this_request() -> Request:
    """The request being handled."""
    return _cv_request.get().request


def this_app() -> Flask:
    """The app of the current context."""
    return _cv_app.get().app


def request_state() -> dict[str, Any]:
    """This request's own dict, made on first use."""
    environ = _cv_request.get().request.environ
    state: dict[str, Any] | None = environ.get(ENVIRON_KEY)
    if state is None:
        state = environ[ENVIRON_KEY] = {}
    return state
