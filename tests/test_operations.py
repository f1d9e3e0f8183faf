"""Events, metrics and unlock tokens wired into real requests."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from flask import Flask, request
from prometheus_client import CollectorRegistry

from flask_lockout import Lockout

from .conftest import run_in_threads

ALICE = "login:email:alice@example.com"


def login_app(**config: Any) -> tuple[Flask, Lockout]:
    app = Flask(__name__)
    app.config.update({"LOCKOUT_MAX_FAILURES": 2, **config})
    lockout = Lockout()
    registry = CollectorRegistry()
    if config.get("LOCKOUT_METRICS"):
        lockout.init_metrics(registry)
    lockout.init_app(app)
    app.extensions["registry"] = registry

    @app.post("/login")
    @lockout.throttled("100/minute", by="ip")
    @lockout.lockout_on_failure(by="form:email", scope="login")
    def login() -> tuple[str, int]:
        if request.form.get("password") == "right":
            lockout.succeeded()
            return "welcome", 200
        return "no", 401

    return app, lockout


def storage_config(name: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    if name == "memory":
        return {}
    return {
        "LOCKOUT_STORAGE_URI": request.getfixturevalue("redis_server"),
        "LOCKOUT_KEY_PREFIX": request.getfixturevalue("redis_prefix"),
    }


STORAGES = ["memory", pytest.param("redis", marks=pytest.mark.redis)]


@pytest.mark.parametrize("storage", STORAGES)
def test_locks_resets_and_unlocks_are_events(
    storage: str, request: pytest.FixtureRequest
) -> None:
    app, lockout = login_app(**storage_config(storage, request))
    client = app.test_client()
    for _ in range(2):
        client.post(
            "/login",
            data={"email": "alice@example.com"},
            environ_base={"REMOTE_ADDR": "203.0.113.7"},
        ).close()
    with app.app_context():
        lockout.reset(ALICE)
        token = lockout.issue_unlock_token(ALICE)
        assert lockout.redeem_unlock_token(token) == ALICE
        assert lockout.redeem_unlock_token(token) is None
        events = lockout.events()
    assert [e["kind"] for e in events] == ["unlocked", "reset", "locked"]
    locked = events[2]
    assert locked["key"] == ALICE and locked["retry_after"] == 60
    assert locked["endpoint"] == "login" and locked["client_ip"] == "203.0.113.7"
    assert isinstance(locked["time"], int | float)


@pytest.mark.parametrize("storage", STORAGES)
def test_unlock_tokens_one_winner_and_nothing_for_bad_ones(
    storage: str, request: pytest.FixtureRequest
) -> None:
    app, lockout = login_app(**storage_config(storage, request))
    with app.app_context():
        lockout.record_failure(ALICE)
        lockout.record_failure(ALICE)
        token = lockout.issue_unlock_token(ALICE, ttl_seconds=60)
        other = lockout.issue_token("user-1", ttl_seconds=60)
        for bad in (None, "", "forged", token[:-1], token + "x", 42, other):
            assert lockout.redeem_unlock_token(bad) is None
        assert lockout.is_locked(ALICE)[0]  # nothing bad unlocked it
    winners: list[object] = []
    lock = threading.Lock()

    def redeem() -> None:
        with app.app_context():
            found = lockout.redeem_unlock_token(token)
        with lock:
            winners.append(found)

    run_in_threads(redeem, 20)
    assert winners.count(ALICE) == 1 and winners.count(None) == 19
    with app.app_context():
        assert lockout.is_locked(ALICE) == (False, 0)


def sample(app: Flask, name: str, **labels: str) -> float:
    value = app.extensions["registry"].get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_decisions_are_counted() -> None:
    app, _ = login_app(LOCKOUT_METRICS=True)
    client = app.test_client()
    client.post("/login", data={"email": "a@x", "password": "right"})
    for _ in range(3):
        client.post("/login", data={"email": "b@x"})
    name = "flask_lockout_decisions_total"
    assert sample(app, name, endpoint="login", decision="success") == 1
    assert sample(app, name, endpoint="login", decision="failure") == 2
    assert sample(app, name, endpoint="login", decision="locked") == 1


def test_storage_errors_and_the_fallback_are_measured() -> None:
    from .redis_proc import free_port

    app, _ = login_app(
        LOCKOUT_METRICS=True,
        LOCKOUT_STORAGE_URI=f"redis://127.0.0.1:{free_port()}/0",
    )
    client = app.test_client()
    client.post("/login", data={"email": "a@x"})
    assert sample(app, "flask_lockout_storage_errors_total") >= 1
    assert sample(app, "flask_lockout_fallback_active") == 1
    with app.app_context():
        kinds = [e["kind"] for e in app.extensions["lockout"].extension.events()]
    assert kinds == ["storage_error"]


def test_metrics_without_prometheus_fail_at_init_app(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    from flask_lockout import ConfigurationError

    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    app = Flask(__name__)
    app.config["LOCKOUT_METRICS"] = True
    with pytest.raises(ConfigurationError, match="LOCKOUT_METRICS"):
        Lockout(app)


@pytest.mark.redis
def test_events_cost_the_decision_no_round_trip(
    round_trips: list[int], redis_server: str, redis_prefix: str
) -> None:
    app, _ = login_app(
        LOCKOUT_STORAGE_URI=redis_server, LOCKOUT_KEY_PREFIX=redis_prefix
    )
    client = app.test_client()
    client.post("/login", data={"email": "warm@x"}).close()
    client.post("/login", data={"email": "a@x"}).close()
    round_trips[0] = 0
    response = client.post("/login", data={"email": "a@x"})  # this one locks
    assert response.status_code == 401
    assert round_trips[0] == 1  # the decision: unchanged with events on
    response.close()  # sent: the event follows in one pipelined write
    assert round_trips[0] == 2


def test_any_other_token_is_no_unlock_token() -> None:
    app, lockout = login_app()
    with app.app_context():
        lockout.record_failure(ALICE)
        lockout.record_failure(ALICE)
        # A subject the app lets a user choose names nothing: unlock tokens
        # live apart from every other token.
        for subject in (ALICE, "\x00unlock\x00" + ALICE, "unlock-" + ALICE):
            assert lockout.redeem_unlock_token(lockout.issue_token(subject, 60)) is None
        assert lockout.is_locked(ALICE)[0]


def test_an_unlock_token_ends_the_lock_but_keeps_the_backoff(clock: Any) -> None:
    from flask_lockout import MemoryStorage

    app = Flask(__name__)
    app.config["LOCKOUT_MAX_FAILURES"] = 2
    lockout = Lockout(app, storage=MemoryStorage(clock=clock))
    with app.app_context():
        lockout.record_failure(ALICE)
        assert lockout.record_failure(ALICE) == (True, 60)
        assert lockout.redeem_unlock_token(lockout.issue_unlock_token(ALICE)) == ALICE
        assert lockout.is_locked(ALICE) == (False, 0)
        # A token in the wrong hands buys one guess: the next failure locks
        # again, for twice as long.
        assert lockout.record_failure(ALICE) == (True, 120)
