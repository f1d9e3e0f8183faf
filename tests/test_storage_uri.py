"""LOCKOUT_STORAGE_URI is checked whole at init_app: a URI no client could
connect with stops the app at start, never a 500 on every request."""

from __future__ import annotations

import pytest
from flask import Flask

from flask_lockout import ConfigurationError, Lockout, RedisStorage, storage_from_uri

BAD = [
    "redis://127.0.0.1:notaport",
    "redis://127.0.0.1:99999/0",
    "redis://127.0.0.1:0/0",
    "redis://127.0.0.1:/0",
    "redis://127.0.0.1:6379:6380/0",
    "redis://",
    "redis://:secret@/0",
    "redis://bad host:6379/0",
    "redis://[::1/0",
    "redis://127.0.0.1:6379/zero",
    "redis://127.0.0.1:6379/0?db=one",
    "redis://127.0.0.1:6379/0?socket_timeout=soon",
    "rediss://127.0.0.1:tls/0",
    "valkey://127.0.0.1:notaport/0",
    "unix://",
    "redis+cluster://127.0.0.1:7000,nonsense",
    "redis+cluster://127.0.0.1:7000,127.0.0.1:notaport",
    "redis+cluster://127.0.0.1:7000/2",
    "redis+cluster://",
]

GOOD = [
    "redis://127.0.0.1:6379/0",
    "redis://localhost",
    "redis://user:p%40ss@127.0.0.1:6379/2",
    "redis://[::1]:6379/0",
    "redis://127.0.0.1:6379/0?socket_timeout=2",
    "redis://127.0.0.1:6379?db=3",
    "rediss://127.0.0.1:6380/0",
    "unix:///run/redis.sock?db=1",
    "valkey://127.0.0.1:6379/0",
    "redis+cluster://127.0.0.1:7000,[::1]:7001",
]


@pytest.mark.parametrize("uri", BAD)
def test_a_bad_uri_fails_init_app_naming_the_key(uri: str) -> None:
    app = Flask(__name__)
    app.config["LOCKOUT_STORAGE_URI"] = uri
    with pytest.raises(ConfigurationError, match="LOCKOUT_STORAGE_URI"):
        Lockout(app)
    assert "lockout" not in app.extensions


@pytest.mark.parametrize("uri", GOOD)
def test_a_good_uri_builds_without_connecting(uri: str) -> None:
    # Nothing listens on most of these: building must not connect.
    assert isinstance(storage_from_uri(uri), RedisStorage)


def test_the_message_says_what_is_wrong_and_never_the_password() -> None:
    with pytest.raises(ConfigurationError) as raised:
        storage_from_uri("redis://alice:s3cret@127.0.0.1:notaport/0")
    message = str(raised.value)
    assert "'notaport'" in message and "65535" in message
    assert "s3cret" not in message
