from __future__ import annotations

import importlib.util
import pathlib
from types import ModuleType
from typing import Any

import pytest

EXAMPLES = pathlib.Path(__file__).parent.parent / "examples"
ALICE = {"email": "alice@example.com", "password": "correct horse battery staple"}


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def login_client(**config: Any) -> Any:
    return (
        load("login_app")
        .create_app({"LOCKOUT_STORAGE_URI": "memory://", **config})
        .test_client()
    )


def test_login_app_locks_after_five_wrong_passwords() -> None:
    client = login_client()
    assert client.get("/login").status_code == 200
    wrong = {"email": "Alice@Example.com ", "password": "guess"}
    answers = [client.post("/login", data=wrong) for _ in range(5)]
    # Post/Redirect/Get: each wrong password is a flash and a redirect.
    assert [a.status_code for a in answers] == [302] * 5
    assert b"Wrong email or password." in client.get("/login").data
    locked = client.post("/login", data=ALICE)
    assert locked.status_code == 429
    assert locked.headers["Retry-After"] == "60"
    assert b"Try again in 1 minute." in locked.data


def test_login_app_signs_in_by_form_and_json() -> None:
    client = login_client()
    response = client.post("/login", data=ALICE, follow_redirects=True)
    assert b"Welcome, alice@example.com." in response.data
    assert "token" in client.post("/api/login", json=ALICE).json


def test_a_success_forgives_the_account_but_not_the_address() -> None:
    client = login_client(LOCKOUT_IP_MAX_FAILURES=5)
    wrong = {"email": "alice@example.com", "password": "guess"}
    for _ in range(4):
        client.post("/login", data=wrong)
    client.post("/login", data=ALICE)  # alice's own failures are forgiven
    # Another browser at the same address (no device cookie): the address
    # keeps its four failures, so the next one locks it.
    other = client.application.test_client()
    assert other.post("/login", data={**wrong, "email": "bob@x"}).status_code == 302
    assert other.post("/login", data=ALICE).status_code == 429
    # Alice's own browser has a device cookie: its own bucket, ip included.
    assert client.post("/login", data=ALICE).status_code == 302


def test_html_and_json_logins_share_one_budget() -> None:
    client = login_client()
    form = {"email": "alice@example.com", "password": "guess"}
    answers = [client.post("/login", data=form).status_code for _ in range(3)]
    answers += [client.post("/api/login", json=form).status_code for _ in range(3)]
    assert answers == [302, 302, 302, 401, 401, 429]


def test_login_app_json_lockout() -> None:
    client = login_client(LOCKOUT_MAX_FAILURES=2)
    bad = {"email": "alice@example.com", "password": "x"}
    assert [client.post("/api/login", json=bad).status_code for _ in range(2)] == [
        401,
        401,
    ]
    refused = client.post("/api/login", json=ALICE)
    assert refused.status_code == 429
    assert refused.json["retry_after"] == 60
    elsewhere = {"REMOTE_ADDR": "192.0.2.1"}  # this address is locked: 429 first
    missing = client.post("/api/login", json={"password": "x"}, environ_base=elsewhere)
    assert missing.status_code == 400 and "error" in missing.json


@pytest.mark.redis
def test_login_app_on_redis(redis_server: str, redis_prefix: str) -> None:
    client = login_client(
        LOCKOUT_STORAGE_URI=redis_server, LOCKOUT_KEY_PREFIX=redis_prefix
    )
    bad = {"email": "alice@example.com", "password": "x"}
    assert [client.post("/login", data=bad).status_code for _ in range(6)] == [
        302
    ] * 5 + [429]


def test_json_api() -> None:
    client = load("json_api").create_app({"LOCKOUT_MAX_FAILURES": 2}).test_client()
    good = {"username": "Alice", "password": "correct horse battery staple"}
    assert "token" in client.post("/api/token", json=good).json
    bad = {"username": "alice", "password": "guess"}
    assert [client.post("/api/token", json=bad).status_code for _ in range(2)] == [
        401,
        401,
    ]
    refused = client.post("/api/token", json=good)
    assert refused.status_code == 429 and refused.json["retry_after"] == 60
    elsewhere = {"REMOTE_ADDR": "192.0.2.1"}  # this address is locked: 429 first
    missing = client.post("/api/token", json={"password": "x"}, environ_base=elsewhere)
    assert missing.status_code == 400


def test_password_reset_tokens_work_once() -> None:
    module = load("password_reset")
    client = module.create_app().test_client()
    assert client.post("/reset/request", data={"email": "nobody@x"}).status_code == 202
    assert module.OUTBOX == []
    assert (
        client.post("/reset/request", data={"email": "Alice@Example.com"}).status_code
        == 202
    )
    [(email, token)] = module.OUTBOX
    assert email == "alice@example.com"
    assert client.post("/reset/confirm", data={"token": token}).json == {
        "reset": "user-1"
    }
    assert client.post("/reset/confirm", data={"token": token}).status_code == 400
    assert client.post("/reset/confirm", data={"token": "forged"}).status_code == 400
    for _ in range(2):
        client.post("/reset/request", data={"email": "alice@example.com"})
    assert (
        client.post("/reset/request", data={"email": "alice@example.com"}).status_code
        == 429
    )


@pytest.mark.redis
def test_factory_on_redis(redis_server: str, redis_prefix: str) -> None:
    app = load("factory_redis").create_app(
        {
            "LOCKOUT_STORAGE_URI": redis_server,
            "LOCKOUT_KEY_PREFIX": redis_prefix,
            "LOCKOUT_MAX_FAILURES": 2,
        }
    )
    client = app.test_client()
    bad = {"email": "a@x", "password": "no"}
    assert [client.post("/login", data=bad).status_code for _ in range(3)] == [
        401,
        401,
        429,
    ]


def test_during_a_surge_a_new_device_signs_in_with_an_emailed_code() -> None:
    example = load("surge_challenge")
    app = example.create_app({"LOCKOUT_STORAGE_URI": "memory://"})
    owner = app.test_client()
    assert owner.post("/login", data=ALICE).status_code == 200  # her laptop
    with app.app_context():
        example.lockout.start_surge("login")
    # Her laptop (a known device) notices nothing.
    assert owner.post("/login", data=ALICE).status_code == 200
    # A new phone: a code is mailed (by the view, or on the client's request
    # when the surge's allowance had no room yet), the password unchecked.
    phone = app.test_client()
    asked = phone.post("/login", data=ALICE)
    assert asked.status_code in (401, 429) and asked.json["challenge_required"]
    if asked.status_code == 429:
        assert phone.post("/login/code", data=ALICE).status_code == 202
    email, code = example.OUTBOX[-1]
    assert email == "alice@example.com"
    wrong = phone.post("/login", data={**ALICE, "code": "000000"})
    assert wrong.status_code in (401, 429) and wrong.json["challenge_required"]
    # The wrong guess spent the code it was tried against.
    assert phone.post("/login", data={**ALICE, "code": code}).status_code != 200
    assert phone.post("/login/code", data=ALICE).status_code == 202
    email, code = example.OUTBOX[-1]
    assert phone.post("/login", data={**ALICE, "code": code}).status_code == 200
    # A stuffer with the right password but no mailbox never gets in.
    bot = app.test_client()
    answers = [bot.post("/login", data=ALICE).status_code for _ in range(3)]
    assert 200 not in answers
