"""A login app guarded by Flask-Lockout.

Run it with ``flask --app examples/login_app.py run`` and sign in as
``alice@example.com`` / ``correct horse battery staple`` at /login, or POST
JSON to /api/login. Five wrong passwords for an account (or from one address)
lock it for a minute, then twice as long on each further failure. Set
``LOCKOUT_STORAGE_URI=redis://localhost:6379/0`` to share the state between
workers, and try ``flask --app examples/login_app.py lockout list``.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, jsonify, render_template_string, request
from werkzeug.security import check_password_hash, generate_password_hash

from flask_lockout import Lockout

USERS = {"alice@example.com": generate_password_hash("correct horse battery staple")}
# Checked when the account does not exist, so both paths cost the same.
NO_SUCH_USER = generate_password_hash("no such user")

PAGE = """<!doctype html>
<title>Sign in</title>
<h1>Sign in</h1>
{% if message %}<p role="alert">{{ message }}</p>{% endif %}
<form method="post">
  <label>Email <input name="email" type="email" required></label>
  <label>Password <input name="password" type="password" required></label>
  <button>Sign in</button>
</form>
"""

lockout = Lockout()


def password_ok(email: str, password: str) -> bool:
    email = email.strip().casefold()
    matches = check_password_hash(USERS.get(email, NO_SUCH_USER), password)
    return matches and email in USERS


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config["LOCKOUT_STORAGE_URI"] = os.environ.get(
        "LOCKOUT_STORAGE_URI", "memory://"
    )
    app.config.from_prefixed_env()  # FLASK_LOCKOUT_MAX_FAILURES=3 and so on
    app.config.update(config or {})
    lockout.init_app(app)

    @app.get("/login")
    def login_form() -> str:
        return render_template_string(PAGE, message=None)

    @app.post("/login")
    @lockout.throttled("10/minute;100/day", by="ip")
    @lockout.lockout_on_failure(by=("ip", "form:email"))
    def login() -> tuple[str, int]:
        email = request.form.get("email", "")
        if password_ok(email, request.form.get("password", "")):
            return render_template_string(PAGE, message=f"Welcome, {email}."), 200
        return render_template_string(PAGE, message="Wrong email or password."), 401

    @app.post("/api/login")
    @lockout.throttled("10/minute;100/day", by="ip")
    @lockout.lockout_on_failure(by=("ip", "json:email"))
    def api_login() -> tuple[Any, int]:
        body = request.get_json(silent=True) or {}
        if password_ok(str(body.get("email", "")), str(body.get("password", ""))):
            return jsonify(ok=True), 200
        return jsonify(error="wrong email or password"), 401

    return app


app = create_app()
