"""Redis round trips per request, counted at the client (DESIGN §7): what an
attack costs the storage."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask, request

from flask_lockout import Lockout

pytestmark = pytest.mark.redis


@pytest.fixture
def trips(round_trips: list[int]) -> list[int]:
    return round_trips


@pytest.fixture
def app(redis_server: str, redis_prefix: str) -> Flask:
    app = Flask(__name__)
    app.config.update(
        LOCKOUT_STORAGE_URI=redis_server,
        LOCKOUT_KEY_PREFIX=redis_prefix,
        LOCKOUT_DEVICE_COOKIES=False,
        LOCKOUT_IP_MAX_FAILURES=5,
    )
    lockout = Lockout(app)

    @app.post("/login")
    @lockout.throttled("100/minute", by=("ip", "form:email"))
    @lockout.lockout_on_failure(by=("ip", "form:email"))
    def login() -> tuple[str, int]:
        if request.form.get("password") == "right":
            lockout.succeeded()
            return "welcome", 200
        return "no", 401

    @app.post("/search")
    @lockout.throttled("2/minute", by="ip")
    def search() -> str:
        return "results"

    return app


def count(trips: list[int], call: Any) -> tuple[int, int]:
    trips[0] = 0
    status = call().status_code
    return status, trips[0]


def test_round_trips_per_request(app: Flask, trips: list[int]) -> None:
    client = app.test_client()

    def login(email: str, password: str = "wrong") -> Any:
        return lambda: client.post(
            "/login", data={"email": email, "password": password}
        )

    login("warm@x")()  # scripts loaded, connection open
    client.post("/search")
    assert count(trips, login("a@x")) == (401, 1)  # wrong password, stacked: 1
    assert count(trips, login("b@x", "right")) == (200, 2)  # success: 2
    assert count(trips, lambda: client.post("/search")) == (200, 1)  # throttled: 1
    assert count(trips, lambda: client.post("/search"))[0] == 429
    assert count(trips, lambda: client.post("/search")) == (429, 0)  # known refusal
    for _ in range(5):
        login("c@x")()
    assert count(trips, login("c@x")) == (429, 0)  # locked: answered in-process
    assert count(trips, login("d@x")) == (429, 0)  # the address itself is locked


def test_a_rate_limit_refusal_stacked_on_a_guard_counts_no_attempt(
    app: Flask,
) -> None:
    lockout = app.extensions["lockout"].extension

    @app.post("/otp")
    @lockout.throttled("2/minute", by="ip")
    @lockout.lockout_on_failure(by="form:user")
    def otp() -> tuple[str, int]:
        return "wrong code", 403

    client = app.test_client()
    answers = [client.post("/otp", data={"user": "u1"}).status_code for _ in range(3)]
    assert answers == [403, 403, 429]
    with app.app_context():
        # The refused third request was given back in the same decision.
        assert lockout.status("otp:user:u1").failures == 2
