"""Patient guessing: account keys remember failures for a day however the
guesses are paced; ``ip`` keys lock after ``LOCKOUT_IP_MAX_FAILURES``, so
one person's typos never lock an office out (DESIGN §3.1)."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask, request

from flask_lockout import Lockout, MemoryStorage

from .conftest import FakeClock

PASSWORDS = {"alice@x": "right", "admin@x": "right"}
DAY = 86400


def login_app(clock: FakeClock, **config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="test secret", LOCKOUT_COOKIE_SECURE=False, **config)
    lockout = Lockout(app, storage=MemoryStorage(clock=clock))

    @app.post("/login")
    @lockout.lockout_on_failure(by=("ip", "form:email"), scope="login")
    def login() -> tuple[str, int]:
        email = request.form["email"]
        if PASSWORDS.get(email) == request.form["password"]:
            lockout.succeeded()
            return "ok", 200
        return "no", 401

    return app


def guesses_in_a_day(clock: FakeClock, every: float, burst: int) -> int:
    """Wrong passwords that reach the check in 24 hours, ``burst`` at a time
    every ``every`` seconds, each from a fresh address (no ``ip`` key
    helps)."""
    app = login_app(clock)
    reached = 0
    start, n = clock.now, 0
    while clock.now < start + DAY:
        for _ in range(burst):
            n += 1
            client = app.test_client()
            answer = client.post(
                "/login",
                data={"email": "alice@x", "password": f"guess{n}"},
                environ_base={"REMOTE_ADDR": f"198.51.{n // 250 % 250}.{n % 250}"},
            )
            reached += answer.status_code == 401
        clock.advance(every)
    return reached


@pytest.mark.parametrize(
    ("every", "burst"),
    [
        (900, 4),  # just under the old 15-minute window
        (3600, 4),
        (60, 1),
        (61, 1),
        (30, 1),  # fast: locked at once, then on probation
        (3601, 1),  # one a lock period
        (86399, 4),
    ],
)
def test_an_account_gets_at_most_35_guesses_a_day_however_paced(
    clock: FakeClock, every: float, burst: int
) -> None:
    assert guesses_in_a_day(clock, every, burst) <= 35


def test_the_old_pace_is_stopped(clock: FakeClock) -> None:
    # Four every 15 minutes was 384 a day with a 15-minute window.
    assert guesses_in_a_day(clock, 900, 4) <= 33


def test_one_persons_typos_never_lock_the_office_out(clock: FakeClock) -> None:
    app = login_app(clock)
    office = {"REMOTE_ADDR": "203.0.113.7"}
    alice = app.test_client()
    for _ in range(5):
        alice.post(
            "/login", data={"email": "alice@x", "password": "typo"}, environ_base=office
        )
    # The admin, in a fresh browser at the same address, signs in.
    admin = app.test_client()
    assert (
        admin.post(
            "/login",
            data={"email": "admin@x", "password": "right"},
            environ_base=office,
        ).status_code
        == 200
    )


def test_an_address_spraying_many_accounts_is_still_stopped(clock: FakeClock) -> None:
    app = login_app(clock)
    client = app.test_client()
    answers = [
        client.post(
            "/login", data={"email": f"user{n}@x", "password": "Summer2026!"}
        ).status_code
        for n in range(25)
    ]
    assert answers == [401] * 20 + [429] * 5


def test_a_known_device_that_mistypes_now_and_then_is_never_locked(
    clock: FakeClock,
) -> None:
    # Every device of an account fills one shared bucket that no success
    # clears: with a day's memory it would lock the owner out.
    app = login_app(clock)
    client = app.test_client()
    assert (
        client.post(
            "/login", data={"email": "alice@x", "password": "right"}
        ).status_code
        == 200
    )
    for _ in range(48):  # two typos and a login every hour, for two days
        for password in ("typo", "typo", "right"):
            answer = client.post(
                "/login", data={"email": "alice@x", "password": password}
            )
            assert answer.status_code != 429
        clock.advance(3600)


def test_a_success_clears_the_accounts_long_memory(clock: FakeClock) -> None:
    app = login_app(clock)
    client = app.test_client()
    for _ in range(4):
        client.post("/login", data={"email": "alice@x", "password": "typo"})
        clock.advance(3 * 3600)
    assert (
        client.post(
            "/login", data={"email": "alice@x", "password": "right"}
        ).status_code
        == 200
    )
    # Forgiven: four more typos lock nothing.
    other = app.test_client()
    for _ in range(4):
        answer = other.post(
            "/login",
            data={"email": "alice@x", "password": "typo"},
            environ_base={"REMOTE_ADDR": "192.0.2.1"},
        )
        assert answer.status_code == 401
