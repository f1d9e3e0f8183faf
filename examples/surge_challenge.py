"""A login that asks for an e-mailed code during a credential-stuffing surge.

During a surge, attempts from devices without a device cookie must fit the
surge limits or pass the view's challenge: here a six-digit code mailed to
the account's address. A botnet replaying a leaked list has the passwords,
not the mailboxes; known devices never see the code. Run it with
``flask --app examples/surge_challenge.py run`` and start a surge by hand
with ``flask --app examples/surge_challenge.py lockout surge start login``
(with ``LOCKOUT_STORAGE_URI`` on Redis, so the command reaches the server);
the codes "sent" are printed and kept in OUTBOX.
"""

from __future__ import annotations

import hmac
import secrets
import time
from typing import Any

from flask import Flask, jsonify, request
from werkzeug.security import check_password_hash, generate_password_hash

from flask_lockout import Lockout

USERS = {"alice@example.com": generate_password_hash("correct horse battery staple")}
NO_SUCH_USER = generate_password_hash("no such user")
#: Stands in for an e-mail: what the app would have sent.
OUTBOX: list[tuple[str, str]] = []
#: One code per account at a time, with its expiry. A real app keeps them in
#: its database or in Redis, shared by every worker.
CODES: dict[str, tuple[str, float]] = {}
CODE_SECONDS = 600

lockout = Lockout()


def send_code(email: str) -> None:
    code = f"{secrets.randbelow(10**6):06d}"
    CODES[email] = (code, time.monotonic() + CODE_SECONDS)
    OUTBOX.append((email, code))
    print(f"[mail to {email}] Your sign-in code is {code}.")


def verify() -> bool:
    """The challenge: the code mailed to the account typed. A code is tried
    once (a wrong guess spends it), so it cannot be guessed either."""
    email = request.form.get("email", "").strip().casefold()
    typed = request.form.get("code", "").strip()
    if not typed:
        return False
    found = CODES.pop(email, None)
    return (
        found is not None
        and found[1] > time.monotonic()
        and hmac.compare_digest(found[0], typed)
    )


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="change me",  # device cookies are signed with it
        LOCKOUT_COOKIE_SECURE=False,  # plain http on a laptop
        **(config or {}),
    )
    lockout.init_app(app)

    @app.post("/login")
    @lockout.throttled("10/minute;100/day", by=("ip", "form:email"))
    @lockout.lockout_on_failure(
        by=("ip", "form:email"), scope="login", challenge=verify
    )
    def login() -> tuple[Any, int]:
        email = request.form.get("email", "").strip().casefold()
        if lockout.challenge_required():
            # Checked neither way: the password is no oracle without the code.
            if email in USERS:
                send_code(email)
            return jsonify(
                error="We sent a code to your e-mail: enter it with your password.",
                challenge_required=True,
            ), 401
        password = request.form.get("password", "")
        if check_password_hash(USERS.get(email, NO_SUCH_USER), password) and (
            email in USERS
        ):
            lockout.succeeded()
            return jsonify(welcome=email), 200
        return jsonify(error="Wrong email or password."), 401

    @app.post("/login/code")
    @lockout.throttled("3/hour", by=("ip", "form:email"))
    def request_code() -> tuple[Any, int]:
        """For a client that got a 429 saying a challenge is required."""
        email = request.form.get("email", "").strip().casefold()
        if email in USERS:
            send_code(email)
        return jsonify(sent=True), 202  # the same answer either way

    return app


app = create_app()
