"""The event log on memory, fakeredis and real Redis, through an outage, and
the ``events`` command."""

from __future__ import annotations

import json
from typing import Any

import fakeredis
import pytest
import redis
from flask import Flask

from flask_lockout import FallbackStorage, Lockout, MemoryStorage, RedisStorage
from flask_lockout.events import (
    KINDS,
    REDIS_TTL_SECONDS,
    EventLog,
    decode_event,
    event_line,
)

from .conftest import Backend, FakeClock

KEY = "login:email:alice@example.com"
BOB = "login:email:bob@example.com"


def test_an_event_has_every_field(backend: Backend, clock: FakeClock) -> None:
    log = EventLog(backend.storage, 10, clock=clock)
    log.record("locked", KEY, endpoint="login", client_ip="203.0.113.7", retry_after=60)
    assert log.recent() == [
        {
            "time": clock.now,
            "kind": "locked",
            "key": KEY,
            "endpoint": "login",
            "client_ip": "203.0.113.7",
            "retry_after": 60,
        }
    ]


def test_newest_first_and_capped(backend: Backend, clock: FakeClock) -> None:
    log = EventLog(backend.storage, 5, clock=clock)
    for number in range(12):
        clock.advance(1)
        log.record("reset", f"login:ip:10.0.0.{number}")
    found = log.recent()
    assert [e["key"] for e in found] == [
        f"login:ip:10.0.0.{n}" for n in range(11, 6, -1)
    ]
    assert [e["key"] for e in log.recent(2)] == [
        "login:ip:10.0.0.11",
        "login:ip:10.0.0.10",
    ]
    assert log.recent(0) == []
    if backend.client is not None:
        assert backend.client.llen(log.redis_key) == 5  # type: ignore[attr-defined]


def test_every_kind_is_accepted_and_no_other(backend: Backend) -> None:
    log = EventLog(backend.storage, 10)
    for kind in KINDS:
        log.record(kind, None)
    assert [e["kind"] for e in log.recent()] == list(reversed(KINDS))
    with pytest.raises(ValueError, match="kind must be one of"):
        log.record("hacked", KEY)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "10"])
def test_max_events_must_be_a_whole_number(bad: Any) -> None:
    with pytest.raises(ValueError, match="max_events"):
        EventLog(MemoryStorage(), bad)


def test_memory_keeps_events_in_the_process() -> None:
    log = EventLog(MemoryStorage(), 3)
    assert not log.shared and log.redis_key is None
    log.record("locked", KEY)
    assert log.read().partial is False


# -- Redis ------------------------------------------------------------------


class CountingClient:
    """A redis-py client that counts round trips: direct commands and
    pipeline executions, with the commands each pipeline carried."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.direct: list[str] = []
        self.pipelines: list[list[str]] = []
        self.down = False

    def pipeline(self, transaction: bool = True) -> Any:
        outer = self
        real = self.client.pipeline(transaction=transaction)
        sent: list[str] = []

        class Pipe:
            def __getattr__(self, name: str) -> Any:
                method = getattr(real, name)

                def queue(*args: Any, **kwargs: Any) -> Any:
                    sent.append(name.upper())
                    return method(*args, **kwargs)

                return queue

            def execute(self, *args: Any, **kwargs: Any) -> Any:
                outer.pipelines.append(sent)
                if outer.down:
                    raise redis.ConnectionError("Connection refused")
                return real.execute(*args, **kwargs)

        return Pipe()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.direct.append(name)
            if self.down:
                raise redis.ConnectionError("Connection refused")
            return method(*args, **kwargs)

        return call


@pytest.fixture(params=["fakeredis", pytest.param("redis", marks=pytest.mark.redis)])
def counted(request: pytest.FixtureRequest) -> tuple[CountingClient, RedisStorage]:
    if request.param == "fakeredis":
        client: Any = fakeredis.FakeRedis()
        prefix = "t"
    else:
        client = request.getfixturevalue("redis_client")
        prefix = request.getfixturevalue("redis_prefix")
    counting = CountingClient(client)
    return counting, RedisStorage(counting, prefix=prefix)


def test_one_pipelined_round_trip_per_event(
    counted: tuple[CountingClient, RedisStorage],
) -> None:
    client, storage = counted
    log = EventLog(storage, 100)
    log.record("locked", KEY, retry_after=60)
    assert client.direct == []
    assert client.pipelines == [["LPUSH", "LTRIM", "PEXPIRE"]]


def test_the_list_is_shared_capped_and_expires(
    counted: tuple[CountingClient, RedisStorage],
) -> None:
    client, storage = counted
    writer, reader = EventLog(storage, 3), EventLog(FallbackStorage(storage), 3)
    assert writer.redis_key == f"{storage.prefix}:{{events}}:log"
    assert reader.shared and reader.redis_key == writer.redis_key
    for number in range(5):
        writer.record("locked", f"login:ip:10.0.0.{number}")
    # Another process (another log on the same Redis) sees them.
    assert [e["key"] for e in reader.recent()] == [
        "login:ip:10.0.0.4",
        "login:ip:10.0.0.3",
        "login:ip:10.0.0.2",
    ]
    raw = client.client
    assert raw.llen(writer.redis_key) == 3
    ttl = raw.pttl(writer.redis_key)
    assert 0 < ttl <= REDIS_TTL_SECONDS * 1000


def test_events_written_by_a_script_are_read(
    counted: tuple[CountingClient, RedisStorage],
) -> None:
    client, storage = counted
    log = EventLog(storage, 10)
    # As Lua's cjson writes them: an empty table for nil, integer times.
    client.client.lpush(
        log.redis_key,
        "not json",
        json.dumps({"kind": "unknown"}),
        json.dumps({"time": 5, "kind": "locked", "key": KEY, "endpoint": {}}),
    )
    assert log.recent() == [
        {
            "time": 5.0,
            "kind": "locked",
            "key": KEY,
            "endpoint": None,
            "client_ip": None,
            "retry_after": 0,
        }
    ]
    assert decode_event(b"\xff") is None


def test_an_outage_never_raises_and_the_events_arrive_later(
    counted: tuple[CountingClient, RedisStorage], clock: FakeClock
) -> None:
    client, storage = counted
    log = EventLog(storage, 10, clock=clock)
    log.record("locked", KEY)
    client.down = True
    clock.advance(1)
    log.record("storage_error", None)  # must not raise
    clock.advance(1)
    log.record("reset", KEY)
    page = log.read()
    assert page.partial
    assert [e["kind"] for e in page.events] == ["reset", "storage_error", "locked"]
    client.down = False
    clock.advance(1)
    log.record("storage_recovered", None)
    # The two kept back went with it, in order.
    stored = client.client.lrange(log.redis_key, 0, -1)
    assert [json.loads(e)["kind"] for e in stored] == [
        "storage_recovered",
        "reset",
        "storage_error",
        "locked",
    ]
    page = log.read()
    assert not page.partial and len(page.events) == 4


def test_deferred_events_wait_for_a_flush(
    counted: tuple[CountingClient, RedisStorage],
) -> None:
    client, storage = counted
    log = EventLog(storage, 10)
    log.record("locked", KEY, defer=True)
    log.record("locked", BOB, defer=True)
    assert client.pipelines == [] and client.direct == []
    assert [e["key"] for e in log.recent()] == [BOB, KEY]  # this process sees them
    log.flush()
    log.flush()  # nothing left: no round trip
    assert client.pipelines == [["LPUSH", "LTRIM", "PEXPIRE"]]
    other = EventLog(storage, 10)
    assert [e["key"] for e in other.recent()] == [BOB, KEY]


def test_a_dead_server_never_raises() -> None:
    storage = RedisStorage.from_url(
        "redis://127.0.0.1:1/0?socket_connect_timeout=0.2", prefix="t"
    )
    log = EventLog(storage, 10)
    log.record("storage_error", None)
    assert [e["kind"] for e in log.recent()] == ["storage_error"]


def test_while_the_breaker_is_open_redis_is_not_called(
    counted: tuple[CountingClient, RedisStorage],
) -> None:
    client, storage = counted
    fallback = FallbackStorage(storage)
    fallback.lost = Exception("down")  # type: ignore[assignment]
    log = EventLog(fallback, 10)
    log.record("storage_error", None)
    assert log.read() == ([log.recent()[0]], True)
    assert client.pipelines == [] and client.direct == []


# -- the command --------------------------------------------------------------


def cli_app(storage: object) -> Flask:
    app = Flask(__name__)
    Lockout(app, storage=storage)
    return app


def events_command(*args: str) -> list[str]:
    return ["lockout", "events", *args]


def test_the_command_prints_newest_first() -> None:
    app = cli_app(RedisStorage(fakeredis.FakeRedis(), prefix="t"))
    log = app.extensions["lockout"].events
    runner = app.test_cli_runner()
    assert runner.invoke(args=events_command()).output == "No events yet.\n"
    log.record("locked", KEY, endpoint="login", client_ip="203.0.113.7", retry_after=60)
    log.record("unlocked", KEY)
    result = runner.invoke(args=events_command("--limit", "1"))
    assert result.exit_code == 0
    assert result.output.count("\n") == 1 and "unlocked" in result.output
    lines = runner.invoke(args=events_command()).output.splitlines()
    assert "unlocked" in lines[0] and "UTC" in lines[0]
    assert "locked  login:email:alice@example.com  for 1 minute" in lines[1]
    assert "endpoint=login  ip=203.0.113.7" in lines[1]
    assert runner.invoke(args=events_command("--limit", "0")).exit_code == 2


def test_the_command_needs_an_event_log_it_can_see() -> None:
    memory = cli_app(MemoryStorage()).test_cli_runner().invoke(args=events_command())
    assert memory.exit_code == 1 and "memory://" in memory.output


def test_the_command_says_when_redis_is_down() -> None:
    dead = RedisStorage.from_url(
        "redis://127.0.0.1:1/0?socket_connect_timeout=0.2", prefix="t"
    )
    result = cli_app(dead).test_cli_runner().invoke(args=events_command())
    assert result.exit_code == 1 and "unreachable" in result.output


def test_event_lines_read_well() -> None:
    event = {
        "time": 0.0,
        "kind": "storage_error",
        "key": None,
        "endpoint": None,
        "client_ip": None,
        "retry_after": 0,
    }
    assert event_line(event, now=7200) == (
        "1970-01-01 00:00:00 UTC (2 hours ago)  storage_error  -"
    )
    assert "(3 days ago)" in event_line(event, now=3 * 86400 + 5)
    assert "(just now)" in event_line(event, now=0.5)
