"""A Flask-Limiter app moved to Flask-Lockout: the "after" of docs/migrating.rst.

The "before" (Flask-Limiter) is shown in that page. Run it with
``flask --app examples/migrated_from_limiter.py run``; the login is
``alice@example.com`` / ``correct horse battery staple``.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, redirect, request
from werkzeug.security import check_password_hash, generate_password_hash
from werkzeug.wrappers import Response

from flask_lockout import Lockout

USERS = {"alice@example.com": generate_password_hash("correct horse battery staple")}
NO_SUCH_USER = generate_password_hash("no such user")

lockout = Lockout()


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(
        # RATELIMIT_STORAGE_URI
        LOCKOUT_STORAGE_URI=os.environ.get("LOCKOUT_STORAGE_URI", "memory://"),
        # Limiter(default_limits=["200 per day", "50 per hour"]): the same
        # strings, per client address, on every route without @throttled.
        LOCKOUT_APP_LIMITS="200 per day, 50 per hour",
    )
    app.config.update(config or {})
    lockout.init_app(app)

    @app.get("/")
    def index() -> str:
        return "home"

    @app.get("/health")
    @lockout.exempt  # @limiter.exempt
    def health() -> str:
        return "ok"

    @app.post("/login")
    # @limiter.limit("5/minute, 20/hour"): the same string.
    @lockout.throttled("5/minute, 20/hour", by="ip")
    # @limiter.limit(..., key_func=email, deduct_when=401): a lockout with
    # backoff, counted before the view runs, settled on the final response.
    @lockout.lockout_on_failure(by=("ip", "form:email"), scope="login")
    def login() -> Response | tuple[str, int]:
        email = request.form.get("email", "").strip().casefold()
        password = request.form.get("password", "")
        if check_password_hash(USERS.get(email, NO_SUCH_USER), password) and (
            email in USERS
        ):
            lockout.succeeded()
            return redirect("/")
        return "Wrong email or password.", 401

    return app
