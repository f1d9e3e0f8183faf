"""The fallback breaker trusts Redis again only when a real decision goes
through: a PING answers while scripts are refused, and probing with one made
the storage signals flap every retry interval."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from flask_lockout import LockoutConfig, MemoryStorage, RedisStorage, StorageError
from flask_lockout.storage.fallback import FallbackStorage

from .redis_proc import RedisProcess, free_port, private_redis

pytestmark = [pytest.mark.redis, pytest.mark.usefixtures("need_redis_server_binary")]

POLICY = LockoutConfig(max_failures=3)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@contextmanager
def refusing_scripts(how: str) -> Iterator[tuple[str, RedisProcess]]:
    """A private server that answers PING but refuses the decision scripts."""
    if how == "evalsha renamed":
        with private_redis("--rename-command", "EVALSHA", '""') as server:
            yield server.url, server
    elif how == "acl without evalsha":
        rule = ("--user", "lockout", "on", "nopass", "~*", "&*", "+@all", "-evalsha")
        with private_redis(*rule) as server:
            yield f"redis://lockout@127.0.0.1:{server.port}/0", server
    elif how == "read-only replica":
        # Its master never answers: it serves reads and refuses every write.
        with private_redis("--replicaof", "127.0.0.1", str(free_port())) as server:
            yield server.url, server
    else:
        with private_redis(
            "--maxmemory", "2mb", "--maxmemory-policy", "noeviction"
        ) as s:
            filler = s.client()
            for i in range(1000):  # until it refuses writes
                try:
                    filler.set(f"junk:{i}", "x" * 10_000)
                except Exception:
                    break
            filler.close()
            yield s.url, s


def breaker(uri: str) -> tuple[FallbackStorage, list[str], Clock, RedisStorage]:
    clock = Clock()
    changes: list[str] = []
    primary = RedisStorage.from_url(uri, prefix="probe-test")
    storage = FallbackStorage(
        primary,
        mode="memory",
        retry_seconds=5,
        memory=MemoryStorage(clock=clock),
        clock=clock,
        on_change=lambda error: changes.append("lost" if error else "recovered"),
    )
    return storage, changes, clock, primary


HOW = ["evalsha renamed", "acl without evalsha", "read-only replica", "out of memory"]


@pytest.mark.parametrize("how", HOW)
def test_a_redis_that_answers_ping_but_refuses_scripts_stays_lost(how: str) -> None:
    with refusing_scripts(how) as (uri, _):
        storage, changes, clock, primary = breaker(uri)
        primary.ping()  # it answers
        with pytest.raises(StorageError):
            primary.probe()
        for _ in range(4):
            storage.lockout_failure("login:email:alice", POLICY)
            clock.now += 5  # each interval, one request probes
        assert changes == ["lost"]  # was lost, recovered, lost, ... each interval
        assert storage.degraded
        # Meanwhile the process kept the policy in memory.
        assert storage.lockout_status("login:email:alice", POLICY).locked
        primary.client.close()


def test_the_breaker_closes_once_scripts_run_again() -> None:
    with refusing_scripts("acl without evalsha") as (uri, server):
        storage, changes, clock, primary = breaker(uri)
        storage.lockout_failure("login:email:alice", POLICY)
        admin = server.client()
        admin.acl_setuser("lockout", enabled=True, commands=["+evalsha"])
        admin.close()
        storage.lockout_failure("login:email:alice", POLICY)  # within the interval
        assert changes == ["lost"]
        clock.now += 5
        storage.lockout_failure("login:email:alice", POLICY)
        assert changes == ["lost", "recovered"] and not storage.degraded
        primary.client.close()


def test_memory_probes_at_once() -> None:
    assert MemoryStorage().probe() is None
