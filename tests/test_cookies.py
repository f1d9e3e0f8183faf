"""Cookies: secure defaults from the validated settings, browser rules, and
no attribute injection through the domain or path."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from werkzeug.wrappers import Response

from flask_lockout import Lockout, clear_cookie, set_cookie


def cookie_header(**kwargs: Any) -> str:
    response = Response()
    set_cookie(
        response, kwargs.pop("name", "sid"), kwargs.pop("value", "abc"), **kwargs
    )
    return response.headers["Set-Cookie"]


def attributes(header: str) -> list[str]:
    return [part.strip() for part in header.split(";")[1:]]


def lockout_app(**config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(config)
    Lockout(app)
    return app


def test_secure_defaults() -> None:
    header = cookie_header()
    assert attributes(header) == ["Secure", "HttpOnly", "Path=/", "SameSite=Lax"]


def test_defaults_come_from_the_extension_settings() -> None:
    app = lockout_app(LOCKOUT_COOKIE_SECURE=False, LOCKOUT_COOKIE_SAMESITE="Strict")
    with app.app_context():
        header = cookie_header()
    assert attributes(header) == ["HttpOnly", "Path=/", "SameSite=Strict"]


@pytest.mark.parametrize("text", ["false", "0", "no", "off", " False "])
def test_config_strings_turn_flags_off(text: str) -> None:
    # bool("false") is True: the raw value must never decide.
    app = lockout_app(LOCKOUT_COOKIE_SECURE=text, LOCKOUT_COOKIE_HTTPONLY=text)
    with app.app_context():
        header = cookie_header()
        response = Response()
        clear_cookie(response, "pref")
    assert "Secure" not in attributes(header)
    assert "HttpOnly" not in attributes(header)
    cleared = attributes(response.headers["Set-Cookie"])
    assert "Secure" not in cleared and "HttpOnly" not in cleared


@pytest.mark.parametrize("text", ["true", "1", "yes", "on"])
def test_config_strings_keep_flags_on(text: str) -> None:
    app = lockout_app(LOCKOUT_COOKIE_SECURE=text, LOCKOUT_COOKIE_HTTPONLY=text)
    with app.app_context():
        assert {"Secure", "HttpOnly"} <= set(attributes(cookie_header()))


def test_samesite_setting_none_omits_the_attribute() -> None:
    app = lockout_app(LOCKOUT_COOKIE_SAMESITE=None)
    with app.app_context():
        header = cookie_header()
    assert not any(part.startswith("SameSite") for part in attributes(header))


def test_explicit_arguments_beat_the_settings() -> None:
    app = lockout_app(LOCKOUT_COOKIE_SECURE="false", LOCKOUT_COOKIE_SAMESITE="Lax")
    with app.app_context():
        header = cookie_header(secure=True, http_only=False, samesite="strict")
    assert attributes(header) == ["Secure", "Path=/", "SameSite=Strict"]


def test_raw_config_without_the_extension_is_not_read() -> None:
    app = Flask(__name__)
    app.config.update(LOCKOUT_COOKIE_SECURE=False, LOCKOUT_COOKIE_HTTPONLY=False)
    with app.app_context():
        header = cookie_header()
    assert attributes(header) == ["Secure", "HttpOnly", "Path=/", "SameSite=Lax"]


def test_settings_are_those_read_at_init_app() -> None:
    app = lockout_app(LOCKOUT_COOKIE_SECURE=True)
    app.config["LOCKOUT_COOKIE_SECURE"] = False  # too late: init_app has run
    with app.app_context():
        assert "Secure" in attributes(cookie_header())


def test_prefixed_cookies_are_cleared_secure_even_when_the_setting_is_off() -> None:
    app = lockout_app(LOCKOUT_COOKIE_SECURE="0")
    with app.app_context():
        response = Response()
        clear_cookie(response, "__Host-sid")
    assert "Secure" in attributes(response.headers["Set-Cookie"])


def test_max_age_is_clamped_to_400_days() -> None:
    assert "Max-Age=34560000" in cookie_header(max_age=10**9)
    assert "Max-Age=3600" in cookie_header(max_age=timedelta(hours=1))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"samesite": "None", "secure": False}, "SameSite=None needs secure"),
        ({"partitioned": True, "secure": False}, "Partitioned needs secure"),
        ({"name": "__Secure-id", "secure": False}, "prefix needs secure"),
        ({"name": "__HOST-id", "secure": False}, "prefix needs secure"),
        ({"name": "__Host-id", "domain": "example.com"}, "__Host- cookie needs"),
        ({"name": "__host-id", "path": "/app"}, "__Host- cookie needs"),
        ({"name": "sid; Path=/evil"}, "not a valid token"),
        ({"name": "a b"}, "not a valid token"),
        ({"name": ""}, "not a valid token"),
        ({"value": "a;b"}, "encode it first"),
        ({"value": "caf\u00e9"}, "encode it first"),
        ({"value": "a\r\nSet-Cookie: x=1"}, "encode it first"),
        ({"value": "x" * 5000}, "over 4096 bytes"),
        ({"max_age": -1}, "max_age"),
        ({"samesite": "sometimes"}, "samesite"),
    ],
)
def test_cookies_browsers_would_reject_are_refused(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        cookie_header(**kwargs)


DOMAIN_INJECTIONS = [
    ("example.com; SameSite=None", "inject a cookie attribute"),
    ("example.com;Max-Age=99999999", "inject a cookie attribute"),
    ("example.com\r\nSet-Cookie: x=1", "control character"),
    ("example.com\x00", "control character"),
    ("\texample.com", "control character"),
    ("example.com\x85", "control character"),
    ("exa mple.com", "whitespace"),
    ("example.com\u00a0", "whitespace"),
    ("ex\u00e4mple.com", "not ASCII"),
    ("localhost:5000", "no port"),
    ("example.com,evil.com", "host name cannot contain"),
    ('"example.com"', "host name cannot contain"),
    ("example.com=", "host name cannot contain"),
]
PATH_INJECTIONS = [
    ("/; Domain=evil.example", "inject a cookie attribute"),
    ("/app;Secure", "inject a cookie attribute"),
    ("/a\r\nSet-Cookie: x=1", "control character"),
    ("/a\x00", "control character"),
    ("/a\x7f", "control character"),
    ("/a\tb", "control character"),
    ("app", "must start with '/'"),
    ("", "must start with '/'"),
    ("https://example.com/", "must start with '/'"),
]


@pytest.mark.parametrize(("domain", "message"), DOMAIN_INJECTIONS)
def test_domain_that_would_inject_attributes_is_refused(
    domain: str, message: str
) -> None:
    response = Response()
    with pytest.raises(ValueError, match=message):
        set_cookie(response, "sid", "abc", domain=domain)
    with pytest.raises(ValueError, match=message):
        clear_cookie(response, "sid", domain=domain)
    assert "Set-Cookie" not in response.headers


@pytest.mark.parametrize(("path", "message"), PATH_INJECTIONS)
def test_path_that_would_inject_attributes_is_refused(path: str, message: str) -> None:
    response = Response()
    with pytest.raises(ValueError, match=message):
        set_cookie(response, "sid", "abc", path=path)
    with pytest.raises(ValueError, match=message):
        clear_cookie(response, "sid", path=path)
    assert "Set-Cookie" not in response.headers


def test_refusals_name_the_cookie_and_the_value() -> None:
    with pytest.raises(ValueError) as caught:
        cookie_header(domain="example.com; SameSite=None")
    assert "'sid'" in str(caught.value)
    assert "'example.com; SameSite=None'" in str(caught.value)


@pytest.mark.parametrize(
    ("domain", "shown"),
    [
        ("example.com", "example.com"),
        (".example.com", "example.com"),  # werkzeug drops the leading dot
        ("sub-domain.my_host.example.co.uk", "sub-domain.my_host.example.co.uk"),
        ("localhost", "localhost"),
        ("127.0.0.1", "127.0.0.1"),
        ("xn--exmple-cua.com", "xn--exmple-cua.com"),
    ],
)
def test_host_names_are_accepted(domain: str, shown: str) -> None:
    header = cookie_header(domain=domain)
    assert f"Domain={shown}" in attributes(header)
    assert len(attributes(header)) == 5


@pytest.mark.parametrize(
    ("path", "shown"),
    [("/app", "/app"), ("/a,b", "/a,b"), ("/caf\u00e9", "/caf%C3%A9")],
)
def test_paths_are_accepted(path: str, shown: str) -> None:
    assert f"Path={shown}" in attributes(cookie_header(path=path))


def test_clear_cookie_repeats_the_attributes() -> None:
    response = Response()
    clear_cookie(response, "__Host-sid")
    header = response.headers["Set-Cookie"]
    assert header.startswith("__Host-sid=;")
    assert "Max-Age=0" in header and "Secure" in header and "Path=/" in header
    response = Response()
    clear_cookie(response, "pref", path="/app", domain="example.com")
    header = response.headers["Set-Cookie"]
    assert "Path=/app" in header and "Domain=example.com" in header
