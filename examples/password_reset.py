"""A password-reset flow with opaque single-use tokens.

Requesting a reset is rate-limited per account and per IP; the emailed token
is stored only as its SHA-256, lives 15 minutes, and works exactly once.
Run it with ``flask --app examples/password_reset.py run``.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, abort, jsonify, request

from flask_lockout import Lockout

USERS = {"alice@example.com": "user-1"}
#: Stands in for an email: what the app would have sent.
OUTBOX: list[tuple[str, str]] = []

lockout = Lockout()


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(config or {})
    lockout.init_app(app)

    @app.post("/reset/request")
    @lockout.throttled("3/hour", by=("ip", "form:email"))
    def request_reset() -> tuple[Any, int]:
        email = request.form["email"].strip().casefold()
        user_id = USERS.get(email)
        if user_id is not None:
            OUTBOX.append((email, lockout.issue_token(user_id, ttl_seconds=900)))
        # The same answer either way: no account enumeration.
        return jsonify(sent=True), 202

    @app.post("/reset/confirm")
    @lockout.throttled("10/minute", by="ip")
    def confirm_reset() -> tuple[Any, int]:
        user_id = lockout.consume_token(request.form.get("token", ""))
        if user_id is None:
            abort(400, "This link is invalid, expired or already used.")
        # ... set the new password of user_id here ...
        return jsonify(reset=user_id), 200

    return app


app = create_app()
