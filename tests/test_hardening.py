"""Opaque tokens, hardened static files and device cookies."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request
from werkzeug.wrappers import Response

from flask_lockout import (
    DEFAULT_STATIC_SECURITY_HEADERS,
    Lockout,
    MemoryStorage,
    RedisStorage,
    Storage,
    consume_opaque_token,
    generate_opaque_token,
    hash_opaque_token,
    issue_opaque_token,
    verify_opaque_token,
)
from flask_lockout.device import COOKIE_NAME

from .conftest import Backend, run_in_threads

# -- opaque tokens -----------------------------------------------------------------


def test_generate_and_verify() -> None:
    plaintext, token_hash = generate_opaque_token()
    assert len(plaintext) >= 43 and token_hash == hash_opaque_token(plaintext)
    assert verify_opaque_token(plaintext, token_hash)
    assert not verify_opaque_token(plaintext + "x", token_hash)
    assert generate_opaque_token()[0] != plaintext


@pytest.mark.parametrize(
    ("plaintext", "token_hash"),
    [
        (None, "0" * 64),
        ("abc", None),
        (b"abc", hash_opaque_token("abc")),
        ("abc", hash_opaque_token("abc").upper()),
        ("abc", "zz" * 32),
        ("abc", "0" * 63),
        ("abc", hash_opaque_token("abc") + "\n"),
        ("\u00e9", hash_opaque_token("\u00e9")),
        ("", hash_opaque_token("")),
        (123, 456),
    ],
)
def test_verify_never_raises_on_malformed_input(
    plaintext: Any, token_hash: Any
) -> None:
    assert verify_opaque_token(plaintext, token_hash) is False


@pytest.mark.clocked
def test_tokens_are_single_use_and_expire(backend: Backend) -> None:
    plaintext = issue_opaque_token(backend.storage, "user-42", ttl_seconds=1)
    assert consume_opaque_token(backend.storage, plaintext) == "user-42"
    assert consume_opaque_token(backend.storage, plaintext) is None
    stale = issue_opaque_token(backend.storage, "user-43", ttl_seconds=1)
    backend.advance(1.1)
    assert consume_opaque_token(backend.storage, stale) is None
    for hostile in (None, 42, "\u00e9", "x" * 5000, ""):
        assert consume_opaque_token(backend.storage, hostile) is None


def race_consumers(storage: Storage, consumers: int = 50) -> list[str | None]:
    plaintext = issue_opaque_token(storage, "user-7", ttl_seconds=60)
    start = threading.Barrier(consumers)
    results: list[str | None] = []
    lock = threading.Lock()

    def consume() -> None:
        start.wait()
        found = consume_opaque_token(storage, plaintext)
        with lock:
            results.append(found)

    run_in_threads(consume, consumers)
    return results


def test_fifty_concurrent_consumers_one_winner_memory() -> None:
    results = race_consumers(MemoryStorage())
    assert results.count("user-7") == 1 and results.count(None) == 49


@pytest.mark.redis
def test_fifty_concurrent_consumers_one_winner_redis(
    redis_client: Any, redis_prefix: str
) -> None:
    results = race_consumers(RedisStorage(redis_client, prefix=redis_prefix))
    assert results.count("user-7") == 1 and results.count(None) == 49


def test_token_api_on_the_extension() -> None:
    app = Flask(__name__)
    lockout = Lockout(app)
    with app.app_context():
        plaintext = lockout.issue_token("user-1", 600)
        assert lockout.consume_token(plaintext) == "user-1"
        assert lockout.consume_token(plaintext) is None


def test_token_api_fails_closed_on_outage() -> None:
    from flask_lockout import StorageOutage

    from .redis_proc import free_port

    app = Flask(__name__)
    app.config["LOCKOUT_STORAGE_URI"] = f"redis://127.0.0.1:{free_port()}/0"
    app.config["LOCKOUT_FAIL_MODE"] = "open"
    lockout = Lockout(app)  # fail open, yet a token cannot be trusted unchecked
    with app.test_request_context(), pytest.raises(StorageOutage):
        lockout.consume_token("anything")


# -- hardened static files -----------------------------------------------------------


@pytest.fixture
def static_app(tmp_path: Path) -> Flask:
    files = tmp_path / "files"
    files.mkdir()
    (files / "report.html").write_text("<script>alert(1)</script>")
    (tmp_path / "secret.txt").write_text("outside")
    app = Flask(
        __name__, static_folder=str(tmp_path / "app_static"), static_url_path="/static"
    )
    (tmp_path / "app_static").mkdir()
    (tmp_path / "app_static" / "app.css").write_text("body {}")
    app.config["LOCKOUT_HARDEN_APP_STATIC"] = True
    lockout = Lockout(app)
    app.register_blueprint(lockout.static_blueprint("uploads", str(files), "/uploads"))

    @app.get("/page")
    def page() -> str:
        return "not static"

    @app.get("/uploads-index")
    def lookalike() -> str:
        return "not under the prefix"

    return app


def assert_hardened(response: Any) -> None:
    response.close()  # file responses stay open until closed
    for name, value in DEFAULT_STATIC_SECURITY_HEADERS.items():
        assert response.headers.getlist(name) == [value], (name, response.request.path)


def test_static_headers_on_every_status(static_app: Flask) -> None:
    client = static_app.test_client()
    ok = client.get("/uploads/report.html")
    assert ok.status_code == 200
    assert_hardened(ok)
    assert ok.headers["Content-Type"].startswith("text/html")
    assert_hardened(client.head("/uploads/report.html"))
    partial = client.get("/uploads/report.html", headers={"Range": "bytes=0-3"})
    assert partial.status_code == 206
    assert_hardened(partial)
    cached = client.get(
        "/uploads/report.html", headers={"If-None-Match": ok.headers["ETag"]}
    )
    assert cached.status_code == 304
    assert_hardened(cached)
    missing = client.get("/uploads/nope.js")
    assert missing.status_code == 404
    assert_hardened(missing)
    assert_hardened(client.get("/static/app.css"))
    assert "Content-Security-Policy" not in client.get("/page").headers
    assert "Content-Security-Policy" not in client.get("/uploads-index").headers


@pytest.mark.parametrize(
    "path",
    [
        "/uploads/..%2fsecret.txt",
        "/uploads/../secret.txt",
        "/uploads/%00",
        "/uploads/a%00.html",
        "/uploads/%2e%2e/secret.txt",
        "/uploads/..\\secret.txt",
    ],
)
def test_traversal_is_a_hardened_404(static_app: Flask, path: str) -> None:
    response = static_app.test_client().get(path)
    response.close()
    assert response.status_code == 404
    assert b"outside" not in response.data
    if response.request.path.startswith("/uploads"):
        assert_hardened(response)


def test_config_extends_and_overrides(tmp_path: Path) -> None:
    app = Flask(__name__)
    app.config["LOCKOUT_STATIC_SECURITY_HEADERS"] = {
        "Content-Security-Policy": "default-src 'self'",
        "Cross-Origin-Resource-Policy": None,
        "Cache-Control": "private",
    }
    lockout = Lockout(app)
    (tmp_path / "a.txt").write_text("a")
    app.register_blueprint(lockout.static_blueprint("files", str(tmp_path), "/files/"))

    @app.after_request
    def own_csp(response: Response) -> Response:
        response.headers.add("Content-Security-Policy", "script-src 'none'")
        return response

    response = app.test_client().get("/files/a.txt")
    response.close()
    assert response.headers.getlist("Content-Security-Policy") == ["default-src 'self'"]
    assert "Cross-Origin-Resource-Policy" not in response.headers
    assert response.headers["Cache-Control"] == "private"


# -- device cookies -----------------------------------------------------------------


def device_app(**config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(
        {
            "SECRET_KEY": "test secret",
            "LOCKOUT_DEVICE_COOKIES": True,
            "LOCKOUT_COOKIE_SECURE": False,
            "LOCKOUT_MAX_FAILURES": 3,
            "LOCKOUT_IP_MAX_FAILURES": 3,
            **config,
        }
    )
    lockout = Lockout(app)

    @app.post("/login")
    @lockout.lockout_on_failure(by="form:email")
    def login() -> tuple[str, int]:
        email = request.form["email"].strip().casefold()  # a lenient lookup
        if PASSWORDS.get(email) == request.form.get("password"):
            lockout.succeeded()
            return "ok", 200
        return "no", 401

    return app


PASSWORDS = {"alice@x": "right", "bob@x": "right", "alice@x.evil": "mine"}


def login(client: Any, email: str, password: str) -> int:
    return int(
        client.post("/login", data={"email": email, "password": password}).status_code
    )


def test_the_owners_device_survives_a_lockout_from_elsewhere() -> None:
    app = device_app()
    owner, attacker = app.test_client(), app.test_client()
    assert login(owner, "alice@x", "right") == 200
    assert owner.get_cookie(COOKIE_NAME) is not None
    assert [login(attacker, "alice@x", "guess") for _ in range(4)] == [
        401,
        401,
        401,
        429,
    ]
    assert login(owner, "alice@x", "right") == 200  # the known device
    assert login(attacker, "alice@x", "right") == 429  # everyone else
    # The cookie names the exact spelling that authenticated.
    assert login(owner, "Alice@X", "right") == 429


def test_a_cookie_earned_on_one_account_opens_no_bucket_for_another() -> None:
    app = device_app()
    attacker = app.test_client()
    assert login(attacker, "alice@x.evil", "mine") == 200
    assert attacker.get_cookie(COOKIE_NAME) is not None
    guesses = [login(attacker, "alice@x", f"guess{i}") for i in range(5)]
    assert guesses == [401, 401, 401, 429, 429]


def test_device_cookies_have_their_own_ip_allowance() -> None:
    app = device_app()

    @app.post("/login-ip")
    @app.extensions["lockout"].extension.lockout_on_failure(by=("ip", "form:email"))
    def login_ip() -> tuple[str, int]:
        if request.form.get("password") == "right":
            app.extensions["lockout"].extension.succeeded()
            return "ok", 200
        return "no", 401

    office = {"REMOTE_ADDR": "198.51.100.20"}
    owner, sprayer = app.test_client(), app.test_client()
    assert (
        owner.post(
            "/login-ip",
            data={"email": "alice@x", "password": "right"},
            environ_base=office,
        ).status_code
        == 200
    )
    # An attacker on the same office address sprays other accounts.
    for i in range(5):
        sprayer.post(
            "/login-ip",
            data={"email": f"user{i}@x", "password": "no"},
            environ_base=office,
        )
    refused = sprayer.post(
        "/login-ip", data={"email": "carol@x", "password": "no"}, environ_base=office
    )
    assert refused.status_code == 429  # the shared address is locked
    known = owner.post(
        "/login-ip", data={"email": "alice@x", "password": "right"}, environ_base=office
    )
    assert known.status_code == 200


def test_a_device_that_fails_too_often_is_locked_on_its_own() -> None:
    app = device_app()
    owner, other = app.test_client(), app.test_client()
    login(owner, "alice@x", "right")
    assert [login(owner, "alice@x", "typo") for _ in range(4)] == [401, 401, 401, 429]
    assert login(other, "alice@x", "right") == 200


def test_invalid_device_cookies_count_as_none() -> None:
    app = device_app()
    owner, attacker = app.test_client(), app.test_client()
    login(owner, "bob@x", "right")
    bob_cookie = owner.get_cookie(COOKIE_NAME)
    assert bob_cookie is not None
    for _ in range(3):
        login(attacker, "alice@x", "guess")
    candidates = [
        bob_cookie.value,  # another account's
        bob_cookie.value[:-2] + "xx",  # tampered
        "garbage",
    ]
    for value in candidates:
        attacker.set_cookie(COOKIE_NAME, value)
        assert login(attacker, "alice@x", "right") == 429
    other_app = device_app(SECRET_KEY="another secret")
    foreign = other_app.test_client()
    login(foreign, "alice@x", "right")
    forged = foreign.get_cookie(COOKIE_NAME)
    assert forged is not None
    attacker.set_cookie(COOKIE_NAME, forged.value)
    assert login(attacker, "alice@x", "right") == 429


def test_rotated_secret_key_still_accepts_known_devices() -> None:
    app = device_app()
    owner = app.test_client()
    login(owner, "alice@x", "right")
    app.config.update(SECRET_KEY="new secret", SECRET_KEY_FALLBACKS=["test secret"])
    attacker = app.test_client()
    for _ in range(3):
        login(attacker, "alice@x", "guess")
    assert login(owner, "alice@x", "right") == 200


def test_device_cookies_need_a_secret_key() -> None:
    from flask_lockout import ConfigurationError

    app = Flask(__name__)
    app.config["LOCKOUT_DEVICE_COOKIES"] = True
    with pytest.raises(ConfigurationError, match="LOCKOUT_DEVICE_COOKIES"):
        Lockout(app)
