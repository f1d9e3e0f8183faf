"""One key's page lists the other keys the same attacks locked, each with
its own signed unlock form; every page says when enforcement is off."""

from __future__ import annotations

import re
from typing import Any

import fakeredis
import pytest
from flask import Flask, request
from flask.testing import FlaskClient

from flask_lockout import Lockout, RedisStorage

ALICE = "login:email:alice@example.com"
ALICE_NAME = "login:username:alice"
OFFICE = "203.0.113.7"
OFFICE_KEY = f"login:ip:{OFFICE}"
ELSEWHERE = "198.51.100.9"
RIGHT = "correct horse battery staple"


def make_app(storage: object = None, **config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(
        {
            "SECRET_KEY": "test-secret",
            "LOCKOUT_MAX_FAILURES": 3,
            "LOCKOUT_IP_MAX_FAILURES": 3,
            "LOCKOUT_DEVICE_COOKIES": False,
            **config,
        }
    )
    lockout = Lockout(app, storage=storage)

    @app.post("/login")
    @lockout.lockout_on_failure(by=("ip", "form:email"), scope="login")
    def login() -> tuple[str, int]:
        if request.form.get("password") == RIGHT:
            lockout.succeeded()
            return "welcome", 200
        return "wrong", 401

    @app.post("/login2")
    @lockout.lockout_on_failure(by=("form:email", "form:username"), scope="login")
    def login_both() -> tuple[str, int]:
        return "wrong", 401

    app.register_blueprint(lockout.dashboard_blueprint(lambda: True))
    return app


def guess(client: FlaskClient, address: str, email: str, password: str = "?") -> int:
    return client.post(
        "/login",
        data={"email": email, "password": password},
        environ_base={"REMOTE_ADDR": address},
    ).status_code


def forms_on(page: str) -> dict[str, dict[str, str]]:
    """Each unlock form of a page: its action and hidden fields."""
    found = {}
    for action, body in re.findall(
        r'<form method="post" action="([^"]+)">(.*?)</form>', page, re.DOTALL
    ):
        fields = dict(re.findall(r'name="(\w+)" value="([^"]*)"', body))
        found[action] = fields
    return found


def related_on(page: str) -> list[str]:
    section = page.split('id="related"', 1)
    if len(section) == 1:
        return []
    table = section[1].split("</section>", 1)[0]
    return re.findall(r'<td data-label="Key" class="title"><a [^>]+>([^<]+)</a>', table)


@pytest.mark.parametrize("backend", ["memory", "fakeredis"])
def test_the_account_page_unlocks_the_address_it_was_attacked_from(
    backend: str,
) -> None:
    redis = RedisStorage(fakeredis.FakeRedis(), prefix="related")
    app = make_app(redis if backend == "fakeredis" else None)
    user = app.test_client()
    assert [guess(user, OFFICE, "alice@example.com") for _ in range(3)] == [401] * 3
    assert guess(user, OFFICE, "alice@example.com", RIGHT) == 429

    admin = app.test_client()
    page = admin.get(f"/lockout/key/{ALICE}").text
    assert related_on(page) == [OFFICE_KEY]
    forms = forms_on(page)
    own = forms[f"/lockout/key/{ALICE}/unlock"]
    other = forms[f"/lockout/key/{OFFICE_KEY}/unlock"]
    assert other["back"] == ALICE and other["csrf_token"] != own["csrf_token"]

    # The account alone: the address still refuses its owner.
    admin.post(f"/lockout/key/{ALICE}/unlock", data={"csrf_token": own["csrf_token"]})
    assert guess(user, OFFICE, "alice@example.com", RIGHT) == 429

    response = admin.post(f"/lockout/key/{OFFICE_KEY}/unlock", data=other)
    assert response.status_code == 303
    assert response.headers["Location"] == (
        f"/lockout/key/{ALICE}?released=login:ip:{OFFICE}"
    )
    back = admin.get(response.headers["Location"]).text
    assert f'Unlocked <span class="key">{OFFICE_KEY}</span>.' in back
    assert guess(user, OFFICE, "alice@example.com", RIGHT) == 200


def test_a_related_unlock_needs_its_own_token() -> None:
    app = make_app()
    user = app.test_client()
    for _ in range(3):
        guess(user, OFFICE, "alice@example.com")
    admin = app.test_client()
    forms = forms_on(admin.get(f"/lockout/key/{ALICE}").text)
    alice_token = forms[f"/lockout/key/{ALICE}/unlock"]["csrf_token"]
    refused = admin.post(
        f"/lockout/key/{OFFICE_KEY}/unlock",
        data={"csrf_token": alice_token, "back": ALICE},
    )
    assert refused.status_code == 400
    with app.app_context():
        assert app.extensions["lockout"].extension.is_locked(OFFICE_KEY)[0]


def test_the_address_page_lists_the_accounts_it_locked_and_no_others() -> None:
    app = make_app()
    user = app.test_client()
    for email in ("alice@example.com", "bob@example.com"):
        for _ in range(3):
            guess(user, OFFICE, email)
        with app.app_context():  # the address is unlocked between the two
            app.extensions["lockout"].extension.reset(OFFICE_KEY)
    for _ in range(3):
        guess(user, ELSEWHERE, "carol@example.com")
    page = app.test_client().get(f"/lockout/key/{OFFICE_KEY}").text
    assert set(related_on(page)) == {ALICE, "login:email:bob@example.com"}
    assert "carol" not in page


def test_keys_locked_by_one_request_are_related() -> None:
    app = make_app(LOCKOUT_MAX_FAILURES=2, LOCKOUT_IP_MAX_FAILURES=2)
    user = app.test_client()
    for _ in range(2):
        user.post(
            "/login2",
            data={"email": "alice@example.com", "username": "Alice"},
            environ_base={"REMOTE_ADDR": OFFICE},
        )
    page = app.test_client().get(f"/lockout/key/{ALICE}").text
    assert set(related_on(page)) == {ALICE_NAME, OFFICE_KEY}
    # The address never locked: listed clean, with no button.
    assert f"/lockout/key/{OFFICE_KEY}/unlock" not in forms_on(page)
    assert f"/lockout/key/{ALICE_NAME}/unlock" in forms_on(page)


def test_an_ipv6_attacker_is_listed_by_its_network() -> None:
    app = make_app()
    user = app.test_client()
    for _ in range(3):
        guess(user, "2001:db8::1", "alice@example.com")
    page = app.test_client().get(f"/lockout/key/{ALICE}").text
    assert related_on(page) == ["login:ip:2001:db8::/64"]


def test_a_key_nobody_attacked_lists_nothing() -> None:
    app = make_app()
    page = app.test_client().get(f"/lockout/key/{ALICE}").text
    assert related_on(page) == [] and 'id="related"' not in page


@pytest.mark.parametrize(
    "path", ["/lockout/", "/lockout/keys", f"/lockout/key/{ALICE}"]
)
def test_enforcement_off_is_said_first_on_every_page(path: str) -> None:
    page = make_app(LOCKOUT_ENABLED=False).test_client().get(path).text
    main = page.split("<main>", 1)[1]
    assert main.lstrip().startswith('<p class="note error" id="enforcement-off">')
    assert "LOCKOUT_ENABLED = False" in main


def test_enforcement_on_says_nothing_of_it() -> None:
    page = make_app().test_client().get("/lockout/").text
    assert "enforcement-off" not in page
