"""A login app guarded by Flask-Lockout, written the way most Flask apps are.

Run it with ``flask --app examples/login_app.py run`` and sign in as
``alice@example.com`` / ``correct horse battery staple`` at /login, or POST
JSON to /api/login for a token. A wrong password at /login flashes a message
and redirects back to the form (Post/Redirect/Get); every such answer counts
as a failure, and ``lockout.succeeded()`` marks the right one. Five wrong
passwords for an account (or from one address) lock it for a minute, then
twice as long on each further failure. The HTML and JSON routes check the
same password, so they share one budget: ``scope="login"``.

Set ``LOCKOUT_STORAGE_URI=redis://localhost:6379/0`` to share the state
between workers, and try ``flask --app examples/login_app.py lockout list``.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

from flask import (
    Flask,
    flash,
    jsonify,
    redirect,
    render_template_string,
    request,
    session,
    url_for,
)
from werkzeug.security import check_password_hash, generate_password_hash
from werkzeug.wrappers import Response

from flask_lockout import Lockout

USERS = {"alice@example.com": generate_password_hash("correct horse battery staple")}
# Checked when the account does not exist, so both paths cost the same.
NO_SUCH_USER = generate_password_hash("no such user")

PAGE = """<!doctype html>
<title>Sign in</title>
<h1>Sign in</h1>
{% for message in get_flashed_messages() %}<p role="alert">{{ message }}</p>{% endfor %}
{% if user %}<p>Welcome, {{ user }}.</p>{% endif %}
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
    app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY") or secrets.token_hex(32)
    app.config["LOCKOUT_STORAGE_URI"] = os.environ.get(
        "LOCKOUT_STORAGE_URI", "memory://"
    )
    app.config.from_prefixed_env()  # FLASK_LOCKOUT_MAX_FAILURES=3 and so on
    app.config.update(config or {})
    lockout.init_app(app)

    @app.get("/login")
    def login_form() -> str:
        return render_template_string(PAGE, user=session.get("user"))

    @app.post("/login")
    @lockout.throttled("10/minute;100/day", by="ip")
    @lockout.lockout_on_failure(by=("ip", "form:email"), scope="login")
    def login() -> Response:
        email = request.form.get("email", "")
        if password_ok(email, request.form.get("password", "")):
            lockout.succeeded()
            session["user"] = email.strip().casefold()
            return redirect(url_for("login_form"))
        flash("Wrong email or password.")
        return redirect(url_for("login_form"))

    @app.post("/api/login")
    @lockout.throttled("10/minute;100/day", by="ip")
    @lockout.lockout_on_failure(by=("ip", "json:email"), scope="login")
    def api_login() -> tuple[Any, int]:
        body = request.get_json(silent=True) or {}
        if password_ok(str(body.get("email", "")), str(body.get("password", ""))):
            lockout.succeeded()
            return jsonify(token=secrets.token_urlsafe(32)), 200
        return jsonify(error="wrong email or password"), 401

    return app


app = create_app()
