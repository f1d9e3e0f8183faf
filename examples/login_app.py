"""A login form guarded by LoginLockout.

Run it with ``flask --app examples/login_app.py run`` and sign in as
``alice@example.com`` / ``correct horse battery staple``. Five wrong
passwords lock the account for a minute, then twice as long on each
further failure. Set ``LOCKOUT_STORAGE_URI=redis://localhost:6379/0`` to
share the lockout between workers.
"""

from __future__ import annotations

import os

from flask import Flask, render_template_string, request
from werkzeug.security import check_password_hash, generate_password_hash

from flask_lockout import LockoutConfig, LoginLockout, TooManyAttempts

USERS = {"alice@example.com": generate_password_hash("correct horse battery staple")}
# Compared against when the account does not exist, so both paths cost alike.
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


def create_app(storage: object = None) -> Flask:
    app = Flask(__name__)
    lockout = LoginLockout(
        LockoutConfig(max_failures=5, base_lock_seconds=60),
        storage=storage or os.environ.get("LOCKOUT_STORAGE_URI", "memory://"),
    )

    @app.route("/login", methods=["GET", "POST"])
    def login() -> tuple[str, int] | str:
        if request.method == "GET":
            return render_template_string(PAGE, message=None)
        email = request.form.get("email", "").strip().casefold()
        password = request.form.get("password", "")
        with lockout.attempt(f"login:email:{email}") as attempt:
            if not attempt.granted:
                raise TooManyAttempts(attempt.retry_after)
            password_hash = USERS.get(email, NO_SUCH_USER)
            if email in USERS and check_password_hash(password_hash, password):
                attempt.succeeded()
                return render_template_string(PAGE, message=f"Welcome, {email}.")
            check_password_hash(password_hash, password)
            attempt.failed()
        return render_template_string(PAGE, message="Wrong email or password."), 401

    return app


app = create_app()
