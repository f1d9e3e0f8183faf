"""Hostile input through the Flask test client: never a 5xx, every storage
key with a TTL, no storage key over a few hundred bytes."""

from __future__ import annotations

import fakeredis
from flask import Flask, request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_lockout import Lockout

MALICIOUS = [
    "",
    " ",
    "\x00",
    "{}",
    "}{",
    "a{b}c",
    "*",
    "[",
    "\\",
    "%",
    "../../etc/passwd",
    "' OR 1=1 --",
    "<script>alert(1)</script>",
    "\u202e\u0000\ufeff",
    "ｆｕｌｌ＠ｗｉｄｔｈ",
    "𝓊𝓃𝒾𝒸ℴ𝒹ℯ",
    "x" * 1_048_576,  # 1 MiB
    "1.2.3.4, 6.6.6.6",
    'for="[::1]"',
]
values = st.one_of(st.sampled_from(MALICIOUS), st.text(max_size=300))
header_values = values.map(lambda v: v.replace("\r", "").replace("\n", ""))


def hostile_app() -> tuple[Flask, fakeredis.FakeRedis]:
    client = fakeredis.FakeRedis()
    app = Flask(__name__)
    app.config.update(
        LOCKOUT_MAX_FAILURES=2,
        LOCKOUT_TRUSTED_PROXIES=["127.0.0.0/8", "::1/128"],
        MAX_CONTENT_LENGTH=4 * 1_048_576,
    )
    lockout = Lockout(app, storage=client)

    @app.post("/login/<path:who>")
    @lockout.throttled("5/minute", by=("ip", "form:email", "header:X-Api-Key"))
    @lockout.lockout_on_failure(
        by=("ip", "form:email", "args:tenant", "header:X-Api-Key", "view_arg:who")
    )
    def login(who: str) -> tuple[str, int]:
        return "no", 401

    @app.post("/api")
    @lockout.lockout_on_failure(
        by=("json:username", lambda: request.headers.get("X-Id", ""))
    )
    def api() -> tuple[str, int]:
        return "no", 403

    return app, client


APP, CLIENT = hostile_app()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    email=values,
    tenant=values,
    api_key=header_values,
    forwarded=header_values,
    who=st.text(min_size=1, max_size=50),
    username=st.one_of(
        values, st.integers(), st.none(), st.booleans(), st.lists(st.integers())
    ),
)
def test_hostile_input_never_5xx(
    email: str, tenant: str, api_key: str, forwarded: str, who: str, username: object
) -> None:
    client = APP.test_client()
    headers = {"X-Api-Key": api_key, "X-Forwarded-For": forwarded, "X-Id": api_key}
    for _ in range(3):
        response = client.post(
            "/login/" + who.replace("/", "_").replace("?", "_").replace("#", "_"),
            query_string={"tenant": tenant},
            data={"email": email},
            headers=headers,
        )
        assert response.status_code < 500, response.status_code
        response = client.post("/api", json={"username": username}, headers=headers)
        assert response.status_code < 500, response.status_code


def test_every_key_has_a_ttl_and_stays_small() -> None:
    test_hostile_input_never_5xx()
    keys = list(CLIENT.scan_iter(count=1000))
    assert keys
    for key in keys:
        assert CLIENT.pttl(key) > 0, key
        assert len(key) <= 300, key
