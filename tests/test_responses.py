"""What a refused client sees: the wait in words and in headers that agree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import Flask, request

from flask_lockout import Lockout, LockoutConfig, LoginLockout, MemoryStorage
from flask_lockout.responses import wait_in_words

from .conftest import FakeClock

#: Clock values where ``(t + 60) - t`` is not 60 in floating point.
AWKWARD = [0.1, 1_000_000.3, 12345.678901, 2**31 + 0.7, 98765.4321, 3.3e9 + 0.01]


@pytest.mark.parametrize("start", AWKWARD)
def test_a_60_second_lock_is_60_at_every_clock_value(start: float) -> None:
    clock = FakeClock(start)
    lockout = LoginLockout(LockoutConfig(max_failures=1), clock=clock)
    assert lockout.record_failure("k") == (True, 60)
    assert lockout.is_locked("k") == (True, 60)
    clock.advance(0.25)
    assert lockout.is_locked("k") == (True, 60)
    clock.advance(59.5)
    assert lockout.is_locked("k") == (True, 1)


def test_many_random_clock_values_never_round_up() -> None:
    import random

    rng = random.Random(7)
    for _ in range(2000):
        clock = FakeClock(rng.uniform(0, 4e9))
        lockout = LoginLockout(LockoutConfig(max_failures=1), clock=clock)
        assert lockout.record_failure("k") == (True, 60)


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (1, "1 second"),
        (45, "45 seconds"),
        (60, "1 minute"),
        (61, "2 minutes"),
        (3600, "1 hour"),
        (3660, "1 hour and 1 minute"),
        (7199, "2 hours"),
    ],
)
def test_waits_in_words_never_understate(seconds: int, words: str) -> None:
    assert wait_in_words(seconds) == words


def locked_app(clock: FakeClock, templates: Path | None = None) -> Flask:
    app = Flask(__name__, template_folder=str(templates) if templates else None)
    app.config["LOCKOUT_MAX_FAILURES"] = 1
    lockout = Lockout(app, storage=MemoryStorage(clock=clock))

    @app.route("/login", methods=["GET", "POST"])
    @lockout.throttled("10/minute", by="ip")
    @lockout.lockout_on_failure(by="form:email")
    def login() -> tuple[str, int]:
        return "no", 401

    @app.post("/reset-code")
    @lockout.lockout_on_failure(by="form:email", scope="reset")
    def reset_code() -> tuple[str, int]:
        return "no", 401

    return app


def test_the_429_page_says_how_long_and_links_back(clock: FakeClock) -> None:
    client = locked_app(clock).test_client()
    client.post("/login", data={"email": "a@x"})
    page = client.post("/login", data={"email": "a@x"})
    assert page.status_code == 429 and page.mimetype == "text/html"
    assert b"Try again in 1 minute." in page.data
    assert b'href="/login"' in page.data
    # A POST-only route would answer the link with 405: no link at all.
    client.post("/reset-code", data={"email": "a@x"})
    page = client.post("/reset-code", data={"email": "a@x"})
    assert page.status_code == 429 and b"href=" not in page.data
    api = client.post(
        "/login", data={"email": "a@x"}, headers={"Accept": "application/json"}
    )
    assert api.json == {
        "error": "Too many attempts. Try again in 1 minute.",
        "retry_after": 60,
    }


def test_an_app_template_replaces_the_page(clock: FakeClock, tmp_path: Path) -> None:
    (tmp_path / "lockout").mkdir()
    (tmp_path / "lockout" / "429.html").write_text(
        "<p>Slow down: {{ wait }} ({{ retry_after }} s)."
        " <a href='{{ back_url }}'>back</a>"
    )
    client = locked_app(clock, tmp_path).test_client()
    client.post("/login", data={"email": "a@x"})
    page = client.post("/login", data={"email": "a@x"})
    assert page.status_code == 429
    assert page.data == (b"<p>Slow down: 1 minute (60 s). <a href='/login'>back</a>")


def test_rate_limit_headers_agree_with_retry_after(clock: FakeClock) -> None:
    client = locked_app(clock).test_client()
    clock.now = 600.0 + 20  # 20 s into a minute window
    first = client.post("/login", data={"email": "a@x"})
    assert first.headers["RateLimit-Limit"] == "10"
    assert first.headers["RateLimit-Remaining"] == "9"
    assert first.headers["RateLimit-Reset"] == "40"  # what is left of the window
    locked = client.post("/login", data={"email": "a@x"})
    # The account is locked, the address's allowance is not used up: a
    # lockout's 429 claims nothing about it.
    assert locked.status_code == 429 and "RateLimit-Remaining" not in locked.headers
    app = Flask(__name__)
    lockout = Lockout(app, storage=MemoryStorage(clock=clock))

    @app.post("/search")
    @lockout.throttled("1/minute")
    def search() -> str:
        return "ok"

    client = app.test_client()
    clock.now = 1200.0
    client.post("/search")
    refused = client.post("/search")
    assert refused.status_code == 429
    assert refused.headers["RateLimit-Reset"] == refused.headers["Retry-After"]
    assert refused.headers["RateLimit-Remaining"] == "0"


def test_rate_limit_headers_show_the_addresss_allowance_only(
    clock: FakeClock,
) -> None:
    app = Flask(__name__)
    app.config["LOCKOUT_DEVICE_COOKIES"] = False
    lockout = Lockout(app, storage=MemoryStorage(clock=clock))

    @app.post("/login")
    @lockout.throttled("10/minute", by=("ip", "form:email"))
    @lockout.lockout_on_failure(by=("ip", "form:email"), scope="login")
    def login() -> tuple[str, int]:
        if request.form.get("password") == "right":
            lockout.succeeded()
            return "ok", 200
        return "no", 401

    # bob logs in three times from his own address...
    for _ in range(3):
        client = app.test_client()
        client.post(
            "/login",
            data={"email": "bob@x", "password": "right"},
            environ_base={"REMOTE_ADDR": "192.0.2.2"},
        )
    # ...which an attacker elsewhere must not read from the headers.
    probe = app.test_client().post(
        "/login",
        data={"email": "bob@x", "password": "?"},
        environ_base={"REMOTE_ADDR": "198.51.100.9"},
    )
    untouched = app.test_client().post(
        "/login",
        data={"email": "carol@x", "password": "?"},
        environ_base={"REMOTE_ADDR": "198.51.100.10"},
    )
    assert probe.headers["RateLimit-Remaining"] == "9"
    assert untouched.headers["RateLimit-Remaining"] == "9"


def test_a_10_per_minute_route_reports_reset_within_the_minute(
    clock: FakeClock,
) -> None:
    app = Flask(__name__)
    lockout = Lockout(app, storage=MemoryStorage(clock=clock))

    @app.get("/search")
    @lockout.throttled("10/minute")
    def search() -> str:
        return "ok"

    client = app.test_client()
    resets = []
    for _ in range(30):
        clock.advance(7.3)
        resets.append(int(client.get("/search").headers["RateLimit-Reset"]))
    assert all(0 <= reset <= 60 for reset in resets)  # was 64 to 120


@pytest.mark.parametrize(
    ("accept", "as_json"),
    [
        ("", False),
        ("*/*", False),
        ("APPLICATION/JSON", True),
        ("application/*", True),
        ("text/html,application/xhtml+xml", False),
    ],
)
def test_the_429_format_follows_accept(
    clock: FakeClock, accept: str, as_json: bool
) -> None:
    client = locked_app(clock).test_client()
    client.post("/login", data={"email": "a@x"})
    refused = client.post("/login", data={"email": "a@x"}, headers={"Accept": accept})
    assert refused.status_code == 429
    assert (refused.mimetype == "application/json") is as_json


@pytest.mark.parametrize(
    "path", ["/%5Cevil.example/x", "/%09/evil.example/x", "//evil.example/x"]
)
def test_the_back_link_never_leads_to_another_host(clock: FakeClock, path: str) -> None:
    app = Flask(__name__)
    app.config["LOCKOUT_APP_LIMITS"] = "1/minute"
    Lockout(app, storage=MemoryStorage(clock=clock))

    @app.get("/<path:page>")
    def page(page: str) -> str:
        return page

    client = app.test_client()
    client.get(path)
    refused = client.get(path)
    assert refused.status_code == 429
    links = re.findall(r'href="([^"]*)"', refused.text)
    assert all(
        link.startswith("/") and not link.startswith(("//", "/\\")) and "\t" not in link
        for link in links
    ), links
