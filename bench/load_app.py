"""The login shape of examples/login_app.py, with a cheap password check by
default so that a load test measures Flask-Lockout, not password hashing.

Served by bench/load.py under gunicorn; FLASK_LOCKOUT_ENABLED toggles it.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from flask import Flask, request
from werkzeug.security import check_password_hash, generate_password_hash

from flask_lockout import Lockout

RIGHT = hashlib.sha256(b"correct horse battery staple").digest()
# LOAD_REAL_HASH=1 checks a Werkzeug scrypt hash, as examples/login_app.py does.
REAL_HASH = generate_password_hash("correct horse battery staple")


def password_ok(password: str) -> bool:
    if os.environ.get("LOAD_REAL_HASH") == "1":
        return check_password_hash(REAL_HASH, password)
    given = hashlib.sha256(password.encode()).digest()
    return hmac.compare_digest(given, RIGHT)


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.update(LOCKOUT_MAX_FAILURES=10**9)
    app.config.from_prefixed_env()
    lockout = Lockout(app)

    @app.post("/login")
    @lockout.throttled("100000/minute", by=("ip", "form:email"))
    @lockout.lockout_on_failure(by=("ip", "form:email"))
    def login() -> tuple[str, int]:
        ok = password_ok(request.form.get("password", ""))
        return ("welcome", 200) if ok else ("no", 401)

    return app
