"""A ``form:`` spec on a body that is no form: the body is read as the view
reads it (``get_json(force=True)``), and a decoy in the query string never
stands in for the account the body names."""

from __future__ import annotations

import io
import json

import pytest
from flask import Flask, request

from flask_lockout import Lockout


def json_view_app() -> tuple[Flask, list[str]]:
    app = Flask(__name__)
    lockout = Lockout(app)
    checked: list[str] = []

    @app.post("/login")
    @lockout.lockout_on_failure(by="form:email", scope="login")
    def login() -> tuple[str, int]:
        body = request.get_json(force=True)
        checked.append(body["email"])
        return "no", 401

    return app, checked


@pytest.mark.parametrize("content_type", ["text/plain", None, "application/x-json"])
def test_a_json_body_under_a_form_spec_counts_on_the_account_it_names(
    content_type: str | None,
) -> None:
    app, checked = json_view_app()
    client = app.test_client()
    body = json.dumps({"email": "alice@x.com", "password": "guess"})
    headers = {"Content-Type": content_type} if content_type else {}
    answers = [
        client.post(
            f"/login?email=decoy{i}@x.com", data=body, headers=headers
        ).status_code
        for i in range(30)
    ]
    # Was 30 of 30 guesses at alice checked, each counted on a fresh decoy.
    assert answers == [401] * 5 + [429] * 25
    assert checked == ["alice@x.com"] * 5


def test_a_chunked_json_body_is_read_too() -> None:
    app, checked = json_view_app()
    client = app.test_client()
    body = json.dumps({"email": "alice@x.com"}).encode()
    # What a server gives for a chunked body: no length, the input terminated.
    chunked = {"CONTENT_LENGTH": "", "wsgi.input_terminated": True}
    for i in range(8):
        client.post(
            f"/login?email=decoy{i}@x.com",
            input_stream=io.BytesIO(body),
            headers={"Content-Type": "text/plain"},
            environ_overrides=chunked,
        ).close()
    assert checked == ["alice@x.com"] * 5


@pytest.mark.parametrize(
    "body",
    [
        "email=alice@x.com",  # no form content type: no form either
        '["alice@x.com"]',
        '"alice@x.com"',
        "null",
        '{"email": ["alice@x.com"]}',
        '{"email": {"$ne": ""}}',
    ],
)
def test_a_body_that_is_no_form_and_no_json_object_is_a_400(body: str) -> None:
    app, checked = json_view_app()
    client = app.test_client()
    answer = client.post(
        "/login?email=decoy@x.com", data=body, headers={"Content-Type": "text/plain"}
    )
    assert answer.status_code == 400
    assert checked == []


def test_forms_and_query_strings_still_count_as_before() -> None:
    app = Flask(__name__)
    lockout = Lockout(app)

    @app.route("/login", methods=["GET", "POST"])
    @lockout.lockout_on_failure(by="form:email", scope="login")
    def login() -> tuple[str, int]:
        return "no", 401

    client = app.test_client()
    for _ in range(3):
        client.post("/login", data={"email": "bob@x.com"}).close()
        client.get("/login?email=bob@x.com").close()  # no body at all
    assert client.post("/login", data={"email": "bob@x.com"}).status_code == 429
    # A JSON object without the field leaves the query's copy to count.
    answer = client.post("/login?email=carol@x.com", json={"password": "x"}, headers={})
    assert answer.status_code == 401
