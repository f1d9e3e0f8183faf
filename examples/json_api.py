"""A JSON login API: per-account lockout plus a per-IP rate limit.

Run it with ``flask --app examples/json_api.py run`` and POST
``{"username": "alice", "password": "..."}`` to /api/token.
"""

from __future__ import annotations

import secrets
from typing import Any

from flask import Flask, jsonify, request
from werkzeug.security import check_password_hash, generate_password_hash

from flask_lockout import Lockout

USERS = {"alice": generate_password_hash("correct horse battery staple")}
NO_SUCH_USER = generate_password_hash("no such user")

lockout = Lockout()


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(config or {})
    lockout.init_app(app)

    @app.post("/api/token")
    @lockout.throttled("30/minute;500/day", by="ip")
    @lockout.lockout_on_failure(by=("ip", "json:username"))
    def token() -> tuple[Any, int]:
        body = request.get_json(silent=True) or {}
        username = str(body.get("username", "")).strip().casefold()
        password = str(body.get("password", ""))
        known = check_password_hash(USERS.get(username, NO_SUCH_USER), password)
        if known and username in USERS:
            lockout.succeeded()  # only the app knows: a 200 alone is not one
            return jsonify(token=secrets.token_urlsafe(32)), 200
        return jsonify(error="invalid credentials"), 401

    return app


app = create_app()
