"""An app factory with Redis storage, configured from the environment.

    export FLASK_LOCKOUT_STORAGE_URI=redis://localhost:6379/0
    export FLASK_LOCKOUT_FAIL_MODE=memory  # the default; or open, or closed
    flask --app "examples.factory_redis:create_app()" run

Every worker and host shares the lockout state; each decision is one atomic
script call timed by the Redis server.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, request

from flask_lockout import Lockout

lockout = Lockout()


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config["LOCKOUT_STORAGE_URI"] = "redis://localhost:6379/0"
    app.config.from_prefixed_env()
    app.config.update(config or {})
    lockout.init_app(app)

    @app.post("/login")
    @lockout.lockout_on_failure(by=("ip", "form:email"))
    def login() -> tuple[str, int]:
        if request.form.get("password") == "correct horse battery staple":
            lockout.succeeded()
            return "welcome", 200
        return "bad credentials", 401

    return app
