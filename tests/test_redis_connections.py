"""Decisions on connections kept between calls, through redis-py's public API:
restarts, frozen servers, forks, the client's own retry policy, health checks
and pools, on real private servers."""

from __future__ import annotations

import os
import threading
import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from flask_lockout import LockoutConfig, RedisStorage, StorageUnavailable
from flask_lockout.limits import as_limits
from flask_lockout.policy import Outcome, reservation_token
from flask_lockout.storage.base import AttemptKey, Settlement

from .redis_proc import private_redis

pytestmark = pytest.mark.redis

POLICY = LockoutConfig(max_failures=10**6)
#: Decisions each process makes at once in the fork test.
N = 1000


class CountingBackoff(NoBackoff):
    """A backoff that counts the retries a policy makes."""

    def __init__(self, counted: list[int]) -> None:
        super().__init__()
        self.counted = counted

    def __deepcopy__(self, memo: object) -> CountingBackoff:
        return self  # the client copies its policy: keep counting here

    def compute(self, failures: int) -> float:
        self.counted.append(failures)
        return 0


def test_a_kept_connection_the_server_closed_costs_no_decision(
    need_redis_server_binary: None,
) -> None:
    with private_redis() as server:
        storage = RedisStorage.from_url(server.url)
        assert storage.lockout_failure("k", POLICY).failures == 1
        admin = server.client()
        # Every other client: as a restart or an idle timeout would.
        assert admin.client_kill_filter(_type="normal", skipme=True) >= 1
        assert storage.lockout_failure("k", POLICY).failures == 2
        server.stop()
        with pytest.raises(StorageUnavailable):
            storage.lockout_failure("k", POLICY)
        server.start()
        assert storage.lockout_failure("k", POLICY).failures == 1
        admin.close()


def test_a_frozen_server_costs_one_socket_timeout(
    need_redis_server_binary: None,
) -> None:
    with private_redis() as server:
        storage = RedisStorage.from_url(server.url)  # socket timeout 0.5 s
        storage.lockout_failure("k", POLICY)  # a kept connection
        server.pause()
        try:
            started = time.monotonic()
            with pytest.raises(StorageUnavailable):
                storage.lockout_failure("k", POLICY)
            waited = time.monotonic() - started
        finally:
            server.resume()
        # Not retried: a timeout retried would multiply the wait.
        assert 0.4 <= waited < 1.5
        # The timed-out failure ran once the server woke: counted once.
        assert storage.lockout_failure("k", POLICY).failures == 3


def test_the_apps_client_retries_a_decision_as_its_policy_says(
    need_redis_server_binary: None,
) -> None:
    retries: list[int] = []
    with private_redis() as server:
        client = server.client(
            retry=Retry(CountingBackoff(retries), 2), socket_timeout=0.5
        )
        storage = RedisStorage(client)
        storage.lockout_failure("k", POLICY)
        server.stop()
        with pytest.raises(StorageUnavailable):
            storage.lockout_failure("k", POLICY)
        assert len(retries) >= 2
        client.close()


def test_a_give_back_is_never_sent_twice_whatever_the_retry_policy(
    need_redis_server_binary: None,
) -> None:
    retries: list[int] = []
    with private_redis() as server:
        client = server.client(
            retry=Retry(CountingBackoff(retries), 3), socket_timeout=0.5
        )
        storage = RedisStorage(client)
        attempts = [AttemptKey("login:email:a", "a")]
        [reservation] = storage.lockout_reserve_all(attempts, POLICY, "t1", 30)
        give_back = Settlement(
            "login:email:a", Outcome.RELEASE, "a", reservation.receipt
        )
        server.pause()  # the command may run, but its answer never comes
        try:
            with pytest.raises(StorageUnavailable):
                storage.lockout_settle_all([give_back], POLICY, "t1")
        finally:
            server.resume()
        assert retries == []
        client.close()


def test_the_clients_health_checks_still_run(need_redis_server_binary: None) -> None:
    with private_redis() as server:
        client = server.client(health_check_interval=1)
        storage = RedisStorage(client)
        admin = server.client()
        storage.lockout_failure("k", POLICY)
        before = admin.info("commandstats").get("cmdstat_ping", {}).get("calls", 0)
        time.sleep(1.2)  # past the interval: the next command checks first
        storage.lockout_failure("k", POLICY)
        after = admin.info("commandstats").get("cmdstat_ping", {}).get("calls", 0)
        assert after == before + 1
        client.close()
        admin.close()


def test_a_blocking_pool_is_never_starved_by_kept_connections(
    redis_server: str, redis_prefix: str
) -> None:
    pool = redis.BlockingConnectionPool.from_url(
        redis_server, max_connections=2, timeout=2
    )
    storage = RedisStorage(redis.Redis(connection_pool=pool), prefix=redis_prefix)
    counts: list[int] = []

    def decide() -> None:
        for _ in range(20):
            counts.append(storage.lockout_failure("k", POLICY).failures)

    threads = [threading.Thread(target=decide) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(counts) == list(range(1, 161))
    pool.disconnect()


def test_reservation_tokens_are_unique_across_forked_processes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = reservation_token()
    prefix = first[:16]
    assert reservation_token()[:16] == prefix  # one process: one prefix
    monkeypatch.setattr(os, "getpid", lambda: -1)  # a child, no fork hooks
    assert reservation_token()[:16] != prefix


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_worker_never_shares_its_parents_connection(
    redis_server: str, redis_prefix: str
) -> None:
    storage = RedisStorage.from_url(redis_server, prefix=redis_prefix)
    # The parent decides first, so that it keeps a connection across fork,
    # as a preloading server's master would.
    assert storage.lockout_failure("parent", POLICY).failures == 1
    ready_read, ready_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its replies must be its own
        os.write(ready_write, b"x")
        try:
            counts = [
                storage.lockout_failure("child", POLICY).failures for _ in range(N)
            ]
            os._exit(0 if counts == list(range(1, N + 1)) else 1)
        finally:
            os._exit(2)  # never back into the test runner
    os.read(ready_read, 1)  # both loop at once from here
    counts = [storage.lockout_failure("parent", POLICY).failures for _ in range(N)]
    _, status = os.waitpid(pid, 0)
    assert counts == list(range(2, N + 2))
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize("decode_responses", [False, True])
def test_an_apps_own_client_in_either_protocol_and_decoding(
    redis_server: str, redis_prefix: str, protocol: int, decode_responses: bool
) -> None:
    client = redis.Redis.from_url(
        redis_server, protocol=protocol, decode_responses=decode_responses
    )
    storage = RedisStorage(client, prefix=redis_prefix)
    assert [storage.lockout_failure("k", POLICY).failures for _ in range(3)] == [
        1,
        2,
        3,
    ]
    assert storage.rate_limit_hit_many(["r"], as_limits("2/minute")).remaining == 1
    assert storage.throttle_hit("t", 60).attempts == 1
    storage.token_put("hash", "login:email:alice@example.com", 60)
    assert storage.token_take("hash") == "login:email:alice@example.com"
    assert storage.token_take("hash") is None
    storage.close()
    client.close()


def test_a_bounded_pool_the_app_shares_keeps_room_for_the_app(
    redis_server: str, redis_prefix: str
) -> None:
    pool = redis.ConnectionPool.from_url(redis_server, max_connections=8)
    client = redis.Redis(connection_pool=pool)
    storage = RedisStorage(client, prefix=redis_prefix)
    barrier = threading.Barrier(8)

    def decide() -> None:
        barrier.wait()
        storage.lockout_failure(f"k{threading.get_ident()}", POLICY)

    threads = [threading.Thread(target=decide) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # The app's own command still finds a connection.
    assert client.incr(f"{redis_prefix}:app") == 1
    storage.close()
    pool.disconnect()
