"""The dashboard through the Flask test client: access, headers, pages,
search, paging and the unlock form."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import fakeredis
import itsdangerous
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from flask_lockout import Lockout, RedisStorage
from flask_lockout import dashboard as dashboard_module
from flask_lockout.dashboard import TOKEN_SALT, dashboard_blueprint
from flask_lockout.events import EventLog

ALICE = "login:email:alice@example.com"
BOB = "login:email:bob@example.com"
SCRIPT_KEY = "login:email:<script>alert(1)</script>"
NONCE = re.compile(r'<style nonce="([^"]+)">')


def make_app(
    authorize: Callable[[], bool] = lambda: True,
    *,
    storage: object = None,
    **config: Any,
) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="test-secret", **config)
    lockout = Lockout(app, storage=storage)
    app.register_blueprint(lockout.dashboard_blueprint(authorize))
    return app


def lockout(app: Flask) -> Lockout:
    extension: Lockout = app.extensions["lockout"].extension
    return extension


def lock(app: Flask, key: str, failures: int | None = None) -> None:
    with app.app_context():
        policy = app.extensions["lockout"].settings.policy_of(key)
        for _ in range(failures or policy.max_failures):
            lockout(app).record_failure(key)


def is_locked(app: Flask, key: str) -> bool:
    with app.app_context():
        return lockout(app).is_locked(key)[0]


def token_on(client: FlaskClient, key: str) -> str:
    page = client.get(f"/lockout/key/{key}").text
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found is not None, page
    return found.group(1)


def unlock_url(key: str) -> str:
    return f"/lockout/key/{key}/unlock"


def events_of(app: Flask, kind: str) -> list[str | None]:
    log: EventLog = app.extensions["lockout"].events
    return [e["key"] for e in log.recent() if e["kind"] == kind]


@pytest.fixture
def app() -> Flask:
    app = make_app()
    lock(app, ALICE)
    lock(app, BOB, 2)
    return app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


# -- access -------------------------------------------------------------------

PAGES = [
    "/lockout/",
    "/lockout/keys",
    "/lockout/keys?q=alice",
    f"/lockout/key/{ALICE}",
    "/lockout/events",
    "/lockout/no-such-page",
]


def test_every_page_and_action_is_403_when_authorize_says_no() -> None:
    calls: list[int] = []
    allowed = make_app()
    app = make_app(lambda: bool(calls.append(1)))
    lock(app, ALICE)
    with allowed.test_request_context():
        valid = dashboard_module._serializer().dumps(ALICE)
    client = app.test_client()
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 403, path
        assert response.headers["Cache-Control"] == "no-store", path
    response = client.post(unlock_url(ALICE), data={"csrf_token": valid})
    assert response.status_code == 403
    # A method the page does not take is refused before it is told apart.
    assert client.post(f"/lockout/key/{ALICE}").status_code == 403
    assert is_locked(app, ALICE)
    assert events_of(app, "unlocked") == []
    assert len(calls) == len(PAGES) + 2  # asked on every request


def test_authorize_sees_the_request_and_must_be_callable() -> None:
    from flask import request

    app = make_app(lambda: request.headers.get("X-Admin") == "yes")
    client = app.test_client()
    assert client.get("/lockout/").status_code == 403
    assert client.get("/lockout/", headers={"X-Admin": "yes"}).status_code == 200
    with pytest.raises(TypeError, match="authorize"):
        dashboard_blueprint(True)  # type: ignore[arg-type]


def test_the_rest_of_the_app_is_left_alone() -> None:
    app = make_app(lambda: False)

    @app.get("/lockoutx")
    def neighbour() -> str:
        return "open"

    response = app.test_client().get("/lockoutx")
    assert response.status_code == 200
    assert "Content-Security-Policy" not in response.headers


def test_a_missing_secret_key_fails_at_registration() -> None:
    app = Flask(__name__)
    Lockout(app)
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        app.register_blueprint(dashboard_blueprint(lambda: True))


def test_another_prefix_and_name() -> None:
    app = make_app()
    app.register_blueprint(
        dashboard_blueprint(lambda: False),
        url_prefix="/admin/locks",
        name="second",
    )
    client = app.test_client()
    assert client.get("/lockout/").status_code == 200
    assert client.get("/admin/locks/").status_code == 403
    assert client.get("/admin/locks/nothing").status_code == 403


# -- headers and assets -------------------------------------------------------


def check_headers(response: TestResponse) -> None:
    headers = response.headers
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    csp = headers["Content-Security-Policy"]
    found = re.fullmatch(
        r"default-src 'none'; style-src 'nonce-([\w-]+)'; form-action 'self';"
        r" frame-ancestors 'none'; base-uri 'none'",
        csp,
    )
    assert found, csp
    styles = NONCE.findall(response.text)
    assert styles in ([], [found.group(1)])


def test_every_response_carries_the_headers(client: FlaskClient) -> None:
    responses = [client.get(path) for path in PAGES[:6]]
    responses.append(client.post(unlock_url(ALICE)))  # 400
    responses.append(client.post(f"/lockout/key/{ALICE}"))  # 405
    responses.append(
        client.post(unlock_url(ALICE), data={"csrf_token": token_on(client, ALICE)})
    )  # 303
    assert [r.status_code for r in responses] == [
        *[200] * 5,
        *[404, 400, 405, 303],
    ]
    for response in responses:
        check_headers(response)
    nonces = {NONCE.findall(r.text)[0] for r in responses[:5]}
    assert len(nonces) == 5  # a fresh nonce per response


def test_no_script_and_no_external_asset(client: FlaskClient) -> None:
    for path in PAGES[:5]:
        page = client.get(path).text
        assert "<script" not in page
        assert "<link" not in page
        assert not re.search(r"""(src|href|action)=["']?(https?:)?//""", page)
        assert '<meta name="viewport" content="width=device-width' in page


# -- pages --------------------------------------------------------------------


def test_the_overview(app: Flask, client: FlaskClient) -> None:
    lock(app, "login:ip:203.0.113.7")
    lock(app, "otp:user_id:7", 1)
    page = client.get("/lockout/").text
    cards = re.findall(r'<div class="number">(\d+)</div>', page)
    assert cards == ["2", "2", "0"]  # locked, failing, probation
    assert "A key locks after 5 failures within 15 minutes." in page
    assert "Locks last 1 minute, 2 minutes, 4 minutes" in page
    assert "then 1 hour for every later lock." in page
    assert "clean after 24 hours without a failure" in page
    assert "memory (this process only)" in page
    assert "on its storage" in page
    assert "<code>otp</code>" in page and "<code>user_id</code>" in page
    assert "Recent events" in page


def test_the_overview_on_a_dead_redis_shows_the_fallback() -> None:
    app = make_app(
        LOCKOUT_STORAGE_URI="redis://127.0.0.1:1/0?socket_connect_timeout=0.2",
        LOCKOUT_STORAGE_RETRY_SECONDS=60,
    )
    lock(app, ALICE)  # decided from memory: the fallback opens
    assert app.extensions["lockout"].fallback_active
    client = app.test_client()
    response = client.get("/lockout/")
    assert response.status_code == 200
    assert "This process is on its memory fallback." in response.text
    assert "Storage failed:" in response.text
    keys = client.get("/lockout/keys")
    assert keys.status_code == 503 and "Storage failed:" in keys.text
    refused = client.post(
        unlock_url(ALICE), data={"csrf_token": token_on(client, ALICE)}
    )
    assert refused.status_code == 503
    assert "was not unlocked" in refused.text


def test_the_key_list_shows_time_left_in_words(client: FlaskClient) -> None:
    page = client.get("/lockout/keys").text
    rows = re.findall(r'class="key" href="[^"]+">([^<]+)</a>', page)
    assert rows == [ALICE, BOB]  # locked first
    assert "locked for 1 minute more" in page
    assert "3 more failures lock it" in page
    assert '<p class="muted">2 keys.</p>' in page


def test_one_key(app: Flask, client: FlaskClient) -> None:
    page = client.get(f"/lockout/key/{ALICE}").text
    assert "Locked for 1 minute more (lock 1)." in page
    assert "<code>alice@example.com</code>" in page
    assert "Next lock lasts</dt><dd>2 minutes" in page
    assert "Unlock alice@example.com" in page
    bob = client.get(f"/lockout/key/{BOB}").text
    assert "2 of 5 failures in the window: 3 more lock it." in bob
    clean = client.get("/lockout/key/login:email:carol@example.com").text
    assert "No failures and no lock." in clean and "Nothing to unlock." in clean
    typed = client.get("/lockout/key/login:email:Carol@Example.com").text
    assert "Requests count this as" in typed


@pytest.mark.parametrize(
    "q", ["alice@example.com", "Alice@Example.COM", "ALICE", "example.com:nope"]
)
def test_search(client: FlaskClient, q: str) -> None:
    page = client.get("/lockout/keys", query_string={"q": q}).text
    rows = re.findall(r'class="key" href="[^"]+">([^<]+)</a>', page)
    if q.endswith("nope"):
        assert rows == [] and "No locked or failing key matches" in page
    else:
        assert rows == [ALICE]


def test_search_finds_a_hashed_key_by_its_full_name(
    app: Flask, client: FlaskClient
) -> None:
    long_key = "login:email:" + "x" * 300 + "@example.com"
    lock(app, long_key)
    page = client.get("/lockout/keys", query_string={"q": long_key}).text
    assert re.findall(r'class="key" href="[^"]+">(sha256:[0-9a-f]+)</a>', page)


def test_pages_of_fifty(app: Flask, client: FlaskClient) -> None:
    for number in range(118):
        lock(app, f"login:ip:10.0.{number // 100}.{number % 100}")
    seen: list[str] = []
    for page, expected, next_link in ((1, 50, True), (2, 50, True), (3, 20, False)):
        text = client.get("/lockout/keys", query_string={"page": page}).text
        rows = re.findall(r'class="key" href="[^"]+">([^<]+)</a>', text)
        assert len(rows) == expected
        assert ("Next →" in text) is next_link
        assert ("← Previous" in text) is (page > 1)
        seen += rows
    assert len(set(seen)) == 120
    assert "Showing 101–120 of 120 keys." in text
    assert "No keys on page 9." in client.get("/lockout/keys?page=9").text
    assert client.get("/lockout/keys?page=-3").status_code == 200
    assert client.get("/lockout/keys?page=abc").status_code == 200
    searched = client.get("/lockout/keys?q=10.0.1.&page=1").text
    assert ">18 keys.</p>" in searched


def test_a_huge_store_is_walked_lazily(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    for number in range(60):
        lock(app, f"login:ip:10.1.0.{number}", 1)
    monkeypatch.setattr(dashboard_module, "SCAN_LIMIT", 30)
    storage = app.extensions["lockout"].storage
    real_keys, real_status = storage.lockout_keys, storage.lockout_status
    pulled: list[str] = []
    statuses: list[str] = []

    def keys() -> Iterator[str]:
        for key in real_keys():
            pulled.append(key)
            yield key

    def status(key: str, policy: Any) -> Any:
        statuses.append(key)
        return real_status(key, policy)

    monkeypatch.setattr(storage, "lockout_keys", keys)
    monkeypatch.setattr(storage, "lockout_status", status)
    page = client.get("/lockout/keys").text
    assert len(pulled) <= 31 and len(statuses) <= 30
    assert "from the first 30 keys of the store" in page
    assert "more than 30" in page
    overview = client.get("/lockout/").text
    assert "Counted over the first 30 keys of the store" in overview


def test_the_events_page(app: Flask, client: FlaskClient) -> None:
    log: EventLog = app.extensions["lockout"].events
    log.record(
        "locked", ALICE, endpoint="login", client_ip="203.0.113.7", retry_after=60
    )
    log.record("storage_error", None)
    page = client.get("/lockout/events").text
    assert page.index("storage error") < page.index("203.0.113.7")
    assert "1 minute" in page and "UTC" in page
    assert f'href="/lockout/key/{ALICE}"' in page


# -- escaping -------------------------------------------------------------------


def test_a_key_made_of_markup_renders_as_text(app: Flask, client: FlaskClient) -> None:
    lock(app, SCRIPT_KEY)
    log: EventLog = app.extensions["lockout"].events
    log.record("locked", SCRIPT_KEY, endpoint="<b>x</b>", client_ip="<i>")
    escaped = "login:email:&lt;script&gt;alert(1)&lt;/script&gt;"
    quoted = "login:email:%3Cscript%3Ealert%281%29%3C%2Fscript%3E"
    for path in (
        "/lockout/",
        "/lockout/keys",
        "/lockout/events",
        f"/lockout/key/{quoted}",
    ):
        page = client.get(path).text
        assert "<script>" not in page and "<b>x</b>" not in page, path
        assert escaped in page, path
    page = client.get("/lockout/keys", query_string={"q": '"><script>'}).text
    assert "<script>" not in page
    assert 'value="&#34;&gt;&lt;script&gt;"' in page


def test_keys_with_slashes_dots_and_newlines_round_trip(
    app: Flask, client: FlaskClient
) -> None:
    for key in ("login:email:a/../../b", "login:x:%2e%2e", "login:x:line\nbreak", "."):
        lock(app, key)
        listing = client.get("/lockout/keys").text
        href = re.search(r'href="([^"]+)">' + re.escape(str(escape(key))), listing)
        assert href, key
        page = client.get(href.group(1).replace("&amp;", "&"))
        assert page.status_code == 200, key
        assert "locked for" in page.text.lower(), key
        response = client.post(
            href.group(1) + "/unlock",
            data={"csrf_token": token_on_url(client, href.group(1))},
        )
        assert response.status_code == 303, key
        assert not is_locked(app, key), key


def escape(text: str) -> str:
    from markupsafe import escape as markup_escape

    return str(markup_escape(text))


def token_on_url(client: FlaskClient, url: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get(url).text)
    assert found is not None
    return found.group(1)


# -- the unlock form ------------------------------------------------------------


def test_unlock_with_a_valid_token(app: Flask, client: FlaskClient) -> None:
    response = client.post(
        unlock_url(ALICE), data={"csrf_token": token_on(client, ALICE)}
    )
    assert response.status_code == 303
    assert response.headers["Location"] == f"/lockout/key/{ALICE}?unlocked=1"
    assert not is_locked(app, ALICE)
    assert events_of(app, "unlocked") == [ALICE]
    page = client.get(response.headers["Location"]).text
    assert "Unlocked." in page and "No failures and no lock." in page


def forged_tokens(app: Flask) -> dict[str, str]:
    with app.test_request_context():
        right = dashboard_module._serializer()
        for_bob = right.dumps(BOB)
        valid = right.dumps(ALICE)
    other_secret = itsdangerous.URLSafeTimedSerializer("guess", salt=TOKEN_SALT)
    other_salt = itsdangerous.URLSafeTimedSerializer("test-secret", salt="other")
    return {
        "another key's": for_bob,
        "another secret's": other_secret.dumps(ALICE),
        "another salt's": other_salt.dumps(ALICE),
        "a truncated": valid[:-3],
        # Not the last character: its low bits may be padding base64 ignores.
        "an edited": valid[:-5] + ("A" if valid[-5] != "A" else "B") + valid[-4:],
        "an empty": "",
        "a huge": "x" * 10_000,
    }


def test_a_forged_or_missing_token_unlocks_nothing(
    app: Flask, client: FlaskClient
) -> None:
    for name, token in forged_tokens(app).items():
        response = client.post(unlock_url(ALICE), data={"csrf_token": token})
        assert response.status_code == 400, name
        assert "Nothing was unlocked." in response.text
    assert client.post(unlock_url(ALICE)).status_code == 400
    assert client.post(unlock_url(ALICE), json={"csrf_token": "x"}).status_code == 400
    assert is_locked(app, ALICE)
    assert events_of(app, "unlocked") == []


def test_a_token_expires_after_an_hour(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    token = token_on(client, ALICE)
    later = time.time() + 3601
    monkeypatch.setattr(itsdangerous.timed.time, "time", lambda: later)
    response = client.post(unlock_url(ALICE), data={"csrf_token": token})
    assert response.status_code == 400
    assert is_locked(app, ALICE)


def test_a_token_survives_a_secret_rotation(app: Flask, client: FlaskClient) -> None:
    token = token_on(client, ALICE)
    app.config.update(SECRET_KEY="new-secret", SECRET_KEY_FALLBACKS=["test-secret"])
    response = client.post(unlock_url(ALICE), data={"csrf_token": token})
    assert response.status_code == 303
    assert not is_locked(app, ALICE)


# -- on Redis ---------------------------------------------------------------------


@pytest.fixture(params=["fakeredis", pytest.param("redis", marks=pytest.mark.redis)])
def redis_app(request: pytest.FixtureRequest) -> Flask:
    if request.param == "fakeredis":
        storage = RedisStorage(fakeredis.FakeRedis(), prefix="t")
    else:
        storage = RedisStorage(
            request.getfixturevalue("redis_client"),
            prefix=request.getfixturevalue("redis_prefix"),
        )
    return make_app(storage=storage)


def test_on_redis(redis_app: Flask) -> None:
    lock(redis_app, ALICE)
    lock(redis_app, BOB, 1)
    client = redis_app.test_client()
    overview = client.get("/lockout/").text
    assert re.findall(r'<div class="number">(\d+)</div>', overview) == ["1", "1", "0"]
    assert "redis" in overview and "memory://" not in overview
    found = client.get("/lockout/keys?q=alice").text
    assert re.findall(r'class="key" href="[^"]+">([^<]+)</a>', found) == [ALICE]
    response = client.post(
        unlock_url(ALICE), data={"csrf_token": token_on(client, ALICE)}
    )
    assert response.status_code == 303
    response.close()  # the server has sent it: the event is written now
    assert not is_locked(redis_app, ALICE)
    # The event went to the shared list: another process's log reads it.
    state = redis_app.extensions["lockout"]
    other = EventLog(state.storage, 10)
    assert [e["kind"] for e in other.recent()][:1] == ["unlocked"]
    assert "unlocked" in client.get("/lockout/events").text
