"""Unlock tokens name their key as a person types it, and fold it as the CLI
does."""

from __future__ import annotations

import pytest
from flask import Flask, request

from flask_lockout import Lockout


def login_app() -> tuple[Flask, Lockout]:
    app = Flask(__name__)
    app.config["LOCKOUT_MAX_FAILURES"] = 2
    lockout = Lockout(app)

    @app.post("/login")
    @lockout.lockout_on_failure(by="form:email", scope="login")
    def login() -> tuple[str, int]:
        if request.form.get("password") == "right":
            lockout.succeeded()
            return "welcome", 200
        return "no", 401

    return app, lockout


def test_a_token_for_a_typed_spelling_unlocks_the_folded_account() -> None:
    app, lockout = login_app()
    client = app.test_client()
    for _ in range(2):
        client.post("/login", data={"email": "alice@x.com", "password": "x"})
    right = {"email": "alice@x.com", "password": "right"}
    assert client.post("/login", data=right).status_code == 429
    with app.app_context():
        token = lockout.issue_unlock_token("login:email:Alice@X.com ")
        assert lockout.redeem_unlock_token(token) == "login:email:alice@x.com"
    assert client.post("/login", data=right).status_code == 200


@pytest.mark.parametrize("key", ["alice", "login:email", "login:email:  ", 42])
def test_a_token_for_something_that_is_no_logical_key_is_refused(key: object) -> None:
    app, lockout = login_app()
    with app.app_context(), pytest.raises(ValueError, match="logical key"):
        lockout.issue_unlock_token(key)  # type: ignore[arg-type]
