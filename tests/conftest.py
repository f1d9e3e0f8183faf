from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import fakeredis
import pytest
import redis

from flask_lockout import MemoryStorage, RedisStorage, Storage

from .redis_proc import redis_server_available

#: The shared server every machine runs; tests use their own key prefix.
REDIS_URL = "redis://127.0.0.1:6379/0"

REDIS_HOWTO = (
    "start one with `redis-server --port 6379 --save '' --daemonize yes`"
    " to run the Redis tests"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--slow", action="store_true", help="also run long load and fault tests"
    )


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    # A test that steps the clock cannot step a real Redis's: it runs on the
    # stores whose time it controls instead of sleeping through real time.
    real_time = [
        item
        for item in items
        if item.get_closest_marker("clocked") and item.name.endswith("[redis]")
    ]
    if real_time:
        config.hook.pytest_deselected(items=real_time)
        items[:] = [item for item in items if item not in real_time]
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def _require_redis() -> bool:
    return os.environ.get("LOCKOUT_REQUIRE_REDIS") == "1"


def missing_redis(why: str) -> None:
    """Skip on a laptop without Redis; fail where Redis is required (CI)."""
    if _require_redis():
        pytest.fail(f"Redis is required (LOCKOUT_REQUIRE_REDIS=1) but {why}")
    pytest.skip(f"{why}; {REDIS_HOWTO}")


@pytest.fixture(scope="session")
def redis_server() -> str:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        missing_redis(f"no Redis answers at 127.0.0.1:6379 ({exc})")
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture(autouse=True)
def close_stores_made_from_uris(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Close the connections of every store a test built from a URI once it
    ends: left to the garbage collector, a socket in a reference cycle can be
    finalized before its connection closes it, a ResourceWarning at a time
    no test controls."""
    made: list[RedisStorage] = []
    from_url = RedisStorage.from_url.__func__  # type: ignore[attr-defined]

    def tracked(cls: type[RedisStorage], uri: str, **options: Any) -> RedisStorage:
        store: RedisStorage = from_url(cls, uri, **options)
        made.append(store)
        return store

    monkeypatch.setattr(RedisStorage, "from_url", classmethod(tracked))
    yield
    for store in made:
        store.close()
        client = store._client
        pool = getattr(client, "connection_pool", None)
        if pool is not None:
            pool.disconnect()  # kept connections too: they count as in use
        elif client is not None:
            client.close()


@pytest.fixture
def need_redis_server_binary() -> None:
    if not redis_server_available():
        missing_redis("redis-server is not installed")


@pytest.fixture
def redis_client(redis_server: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server)
    yield client
    client.close()


@pytest.fixture
def redis_prefix(redis_client: redis.Redis) -> Iterator[str]:
    """A key prefix no other test uses; its keys are deleted afterwards."""
    value = f"test-{uuid.uuid4().hex[:12]}"
    yield value
    for key in redis_client.scan_iter(match=f"{value}:*", count=500):
        redis_client.delete(key)


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Packets written to Redis by redis-py: a pipeline or a script call is
    one; opening a connection (HELLO, CLIENT SETINFO, ...) is not counted."""
    import redis.connection

    sent = [0]
    original = redis.connection.Connection.send_packed_command
    setup = (b"HELLO", b"AUTH", b"CLIENT", b"SELECT", b"READONLY")

    def counting(self: object, command: Any, check_health: bool = True) -> None:
        first = b"".join(command if isinstance(command, list) else [command])
        # The command name is the first bulk string: "*N\r\n$L\r\nNAME".
        name = first.split(b"\r\n", 3)[2].upper() if first[:1] == b"*" else b""
        if name not in setup:
            sent[0] += 1
        original(self, command, check_health)

    monkeypatch.setattr(redis.connection.Connection, "send_packed_command", counting)
    return sent


def run_in_threads(target: Callable[[], None], count: int) -> None:
    """Start ``count`` threads running ``target`` and wait for all of them."""
    import threading

    pool = [threading.Thread(target=target) for _ in range(count)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()


class FakeClock:
    """A clock tests step by hand."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@dataclass
class Backend:
    """A storage under test and the way to move its time forward."""

    name: str
    storage: Storage
    advance: Callable[[float], None]
    client: object = None


def _fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    # fakeredis reads time.time() for TIME and for expiry. Start on a whole
    # second, 2800 s into an hour, like the memory store's clock: tests with
    # per-second windows must not depend on where in a second they began.
    fake = FakeClock(float(int(time.time()) // 3600 * 3600 + 2800))
    monkeypatch.setattr(time, "time", fake)
    return fake


@pytest.fixture(
    params=["memory", "fakeredis", pytest.param("redis", marks=pytest.mark.redis)]
)
def backend(
    request: pytest.FixtureRequest, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> Backend:
    """Each bundled store: memory and fakeredis on a stepped clock, real
    Redis on its own clock (short real waits)."""
    if request.param == "memory":
        return Backend("memory", MemoryStorage(clock=clock), clock.advance)
    if request.param == "fakeredis":
        fake = _fake_time(monkeypatch)
        client = fakeredis.FakeRedis()
        return Backend(
            "fakeredis", RedisStorage(client, prefix="t"), fake.advance, client
        )
    client = request.getfixturevalue("redis_client")
    prefix = request.getfixturevalue("redis_prefix")
    return Backend("redis", RedisStorage(client, prefix=prefix), time.sleep, client)
