from __future__ import annotations

import logging

import fakeredis
import pytest
import redis
from werkzeug.exceptions import ServiceUnavailable, TooManyRequests

from flask_lockout import (
    AttemptThrottle,
    MemoryStorage,
    RedisStorage,
    StorageOutage,
    ThrottleStatus,
    TooManyAttempts,
    storage_from_uri,
)

from .conftest import Backend, FakeClock
from .redis_proc import free_port


@pytest.mark.clocked
def test_blocks_at_max_attempts_until_the_window_ends(backend: Backend) -> None:
    throttle = AttemptThrottle(backend.storage, max_attempts=2, window_seconds=2)
    assert throttle.status("k") == ThrottleStatus(0, False, 0)
    assert throttle.hit("k") == ThrottleStatus(1, False, 0)
    backend.advance(1)  # the window started at the first failure
    assert throttle.hit("k") == ThrottleStatus(2, True, 1)
    assert throttle.status("k") == ThrottleStatus(2, True, 1)
    with pytest.raises(TooManyAttempts) as raised:
        throttle.raise_if_blocked("k")
    assert raised.value.code == 429
    assert isinstance(raised.value, TooManyRequests)
    assert dict(raised.value.get_headers())["Retry-After"] == "1"
    backend.advance(1.1)
    assert throttle.status("k") == ThrottleStatus(0, False, 0)
    assert throttle.raise_if_blocked("k") == ThrottleStatus(0, False, 0)


def test_reset_and_namespaces(backend: Backend) -> None:
    login = AttemptThrottle(backend.storage, 1, 60, namespace="login")
    otp = AttemptThrottle(backend.storage, 1, 60, namespace="otp")
    assert login.hit("alice").blocked
    assert not otp.status("alice").blocked
    login.reset("alice")
    assert login.status("alice").attempts == 0


def test_redis_clients_work_as_they_are(redis_client: redis.Redis) -> None:
    throttle = AttemptThrottle(redis_client, 3, 60, namespace="test-throttle-raw")
    throttle.reset("alice")
    try:
        throttle.hit("alice")
        [key] = list(redis_client.scan_iter(match="lockout:{test-throttle-raw:alice}*"))
        assert 0 < redis_client.ttl(key) <= 60
    finally:
        throttle.reset("alice")


class DictBackend:
    """A user's own store with just the five commands."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.values: dict[str, int] = {}
        self.expiry: dict[str, float] = {}

    def _alive(self, name: str) -> bool:
        if name in self.expiry and self.expiry[name] <= self.clock():
            self.delete(name)
        return name in self.values

    def get(self, name: str) -> int | None:
        return self.values[name] if self._alive(name) else None

    def incr(self, name: str, amount: int = 1) -> int:
        self.values[name] = (self.values[name] if self._alive(name) else 0) + amount
        return self.values[name]

    def expire(self, name: str, time: int) -> bool:
        self.expiry[name] = self.clock() + time
        return True

    def ttl(self, name: str) -> int:
        if not self._alive(name):
            return -2
        if name not in self.expiry:
            return -1
        return int(self.expiry[name] - self.clock())

    def delete(self, *names: str) -> int:
        for name in names:
            self.values.pop(name, None)
            self.expiry.pop(name, None)
        return len(names)


def test_plain_command_backend(clock: FakeClock) -> None:
    store = DictBackend(clock)
    throttle = AttemptThrottle(store, 2, 60, namespace="n")
    throttle.hit("k")
    assert store.ttl("n:k") == 60
    assert throttle.hit("k") == ThrottleStatus(2, True, 60)
    clock.advance(60)
    assert throttle.status("k").attempts == 0


def test_a_counter_left_without_ttl_is_repaired(clock: FakeClock) -> None:
    store = DictBackend(clock)
    store.incr("n:k")  # as if the process died between INCR and EXPIRE
    throttle = AttemptThrottle(store, 5, 60, namespace="n")
    throttle.hit("k")
    assert store.ttl("n:k") == 60


def test_every_redis_counter_gets_a_ttl() -> None:
    client = fakeredis.FakeRedis()
    client.set("lockout:{n:k}:throttle", 3)  # a counter with no TTL
    throttle = AttemptThrottle(client, 5, 60, namespace="n")
    assert throttle.hit("k").attempts == 4
    assert client.ttl("lockout:{n:k}:throttle") == 60


def _dead_redis() -> RedisStorage:
    storage = storage_from_uri(f"redis://127.0.0.1:{free_port()}/0")
    assert isinstance(storage, RedisStorage)
    return storage


def test_fail_open_lets_requests_through_and_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    throttle = AttemptThrottle(_dead_redis(), 1, 60, fail_open=True)
    with caplog.at_level(logging.WARNING, logger="flask_lockout"):
        assert throttle.hit("k") == ThrottleStatus(0, False, 0)
        assert throttle.raise_if_blocked("k").blocked is False
    assert "failing open" in caplog.text
    assert len(caplog.records) == 1  # rate-limited, not one line per request


def test_fail_closed_answers_503_with_retry_after() -> None:
    throttle = AttemptThrottle(_dead_redis(), 1, 60, fail_open=False)
    for call in (throttle.hit, throttle.status, throttle.raise_if_blocked):
        with pytest.raises(StorageOutage) as raised:
            call("k")
        assert isinstance(raised.value, ServiceUnavailable)
        assert raised.value.code == 503
        assert int(dict(raised.value.get_headers())["Retry-After"]) >= 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 1.5}, "max_attempts"),
        ({"window_seconds": 0}, "window_seconds"),
        ({"window_seconds": float("inf")}, "window_seconds"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"max_attempts": 3, "window_seconds": 60, **kwargs}
    with pytest.raises(ValueError, match=message):
        AttemptThrottle(MemoryStorage(), **arguments)  # type: ignore[arg-type]


def test_unusable_backend_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="get/incr/expire/ttl/delete"):
        AttemptThrottle(object(), 3, 60)
