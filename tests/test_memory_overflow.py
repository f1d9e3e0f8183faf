"""A memory store full of protected state: new keys overflow into buckets
per client network (IPv4 /24, IPv6 /48), so a flood locks out its own
network, not every new visitor, and forgets no lock or failure count."""

from __future__ import annotations

import logging

import pytest
from flask import Flask, request

from flask_lockout import Lockout, LockoutConfig, MemoryStorage

from .conftest import FakeClock

NETWORKS = {
    "ipv4": ("203.0.113.{}", "198.51.100.{}"),
    "ipv6": ("2001:db8:1:{:x}::7", "2001:db8:2:{:x}::7"),
}


def login_app(max_keys: int) -> Flask:
    app = Flask(__name__)
    app.config["LOCKOUT_MEMORY_MAX_KEYS"] = max_keys
    # A flood this fast is a surge too: here only the store's bound counts.
    app.config["LOCKOUT_SURGE"] = False
    lockout = Lockout(app)

    @app.post("/login")
    @lockout.lockout_on_failure(by=("ip", "form:email"), scope="login")
    def login() -> tuple[str, int]:
        if request.form["password"] == "right":
            lockout.succeeded()
            return "welcome", 200
        return "no", 401

    return app


def overflow_logs(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "overflow" in r.getMessage()]


@pytest.mark.parametrize("family", sorted(NETWORKS))
def test_a_flood_locks_out_its_own_network_not_new_visitors(
    family: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="flask_lockout")
    attacker, visitors = NETWORKS[family]
    client = login_app(max_keys=300).test_client()

    def post(address: str, email: str, password: str) -> int:
        data = {"email": email, "password": password}
        with client.post(
            "/login", data=data, environ_base={"REMOTE_ADDR": address}
        ) as answer:
            return answer.status_code

    # Fresh accounts from many addresses of one network fill the store with
    # failure counts, and then the overflow.
    flood = [
        post(attacker.format(1 + i % 200), f"user{i}@x.com", "guess")
        for i in range(500)
    ]
    assert flood[-1] == 429
    assert post(attacker.format(250), "late@x.com", "right") == 429
    # New visitors elsewhere with the right password: were 429 each.
    answers = [post(visitors.format(1 + n), f"new{n}@x.com", "right") for n in range(5)]
    assert answers == [200] * 5
    assert len(overflow_logs(caplog)) == 1


def test_no_flood_forgets_a_lock_or_a_failure_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="flask_lockout")
    clock = FakeClock()
    network = ["198.51.100.0/24"]
    store = MemoryStorage(clock=clock, max_keys=50, network=lambda: network[0])
    policy = LockoutConfig(max_failures=3)
    store.lockout_failure("login:email:alice", policy)
    for _ in range(3):
        store.lockout_failure("login:email:bob", policy)
    network[0] = "203.0.113.0/24"
    for i in range(500):
        store.lockout_failure(f"login:email:fresh{i}", policy)
    assert len(store) <= 50 + 1  # the bound, and this network's one bucket
    assert store.lockout_status("login:email:alice", policy).failures == 1
    assert store.lockout_status("login:email:bob", policy).locked
    assert store.lockout_failure("login:email:another", policy).locked
    network[0] = "192.0.2.0/24"
    assert not store.lockout_failure("login:email:another", policy).locked
    assert len(overflow_logs(caplog)) == 1


def test_without_a_network_new_keys_share_one_bucket() -> None:
    store = MemoryStorage(clock=FakeClock(), max_keys=5)
    policy = LockoutConfig(max_failures=3)
    found = [store.lockout_failure(f"k{i}", policy).locked for i in range(10)]
    assert found == [False] * 7 + [True] * 3
