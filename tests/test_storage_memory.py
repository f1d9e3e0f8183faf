from __future__ import annotations

import pytest

from flask_lockout import (
    AttemptThrottle,
    ConfigurationError,
    LockoutConfig,
    LoginLockout,
    MemoryStorage,
    RedisStorage,
    SlidingWindowStore,
    storage_from_uri,
)
from flask_lockout.storage.factory import as_storage, storage_from_client

from .conftest import FakeClock

POLICY = LockoutConfig(max_failures=2, base_lock_seconds=60, window_seconds=60)


def test_the_bound_holds(clock: FakeClock) -> None:
    storage = MemoryStorage(clock=clock, max_keys=100)
    lockout = LoginLockout(POLICY, storage=storage)
    throttle = AttemptThrottle(storage, 5, 60)
    for i in range(1000):
        lockout.record_failure(f"fresh-{i}")
        throttle.hit(f"fresh-{i}")
    # The bound, plus one shared overflow bucket per kind.
    assert len(storage) <= 100 + 2


def test_a_flood_of_fresh_keys_never_unlocks_anyone(clock: FakeClock) -> None:
    storage = MemoryStorage(clock=clock, max_keys=50)
    lockout = LoginLockout(POLICY, storage=storage)
    victims = [f"victim-{i}" for i in range(10)]
    for key in victims:
        lockout.record_failure(key)
        assert lockout.record_failure(key) == (True, 60)
    clock.advance(61)
    on_probation = "probation"
    lockout.record_failure(on_probation)
    lockout.record_failure(on_probation)
    clock.advance(61)  # its lock ended: it is on probation now
    for key in victims:
        lockout.record_success(key)
        lockout.record_failure(key)
        lockout.record_failure(key)
    throttle = AttemptThrottle(storage, 5, 60)
    limits = SlidingWindowStore(storage)
    for i in range(10_000):
        lockout.record_failure(f"attacker-{i}")
        throttle.hit(f"attacker-{i}")
        limits.hit(f"attacker-{i}", "5/min")
    assert len(storage) <= 50 + 3
    for key in victims:
        assert lockout.is_locked(key) == (True, 60)
    assert lockout.record_failure(on_probation) == (True, 120)


def test_expired_entries_go_before_live_counters(clock: FakeClock) -> None:
    storage = MemoryStorage(clock=clock, max_keys=10)
    throttle = AttemptThrottle(storage, 5, 10)
    for i in range(5):
        throttle.hit(f"short-{i}")
    long_throttle = AttemptThrottle(storage, 5, 1000, namespace="long")
    for i in range(5):
        long_throttle.hit(f"long-{i}")
    clock.advance(11)
    for i in range(5):
        long_throttle.hit(f"new-{i}")
    # The five expired counters made the room; no live counter was evicted.
    assert [long_throttle.status(f"long-{i}").attempts for i in range(5)] == [1] * 5


def test_least_recently_used_counter_goes_first(clock: FakeClock) -> None:
    storage = MemoryStorage(clock=clock, max_keys=3)
    throttle = AttemptThrottle(storage, 5, 100)
    for key in ("a", "b", "c"):
        throttle.hit(key)
    throttle.hit("a")  # a is now the most recently used
    throttle.hit("d")
    assert throttle.status("b").attempts == 0
    assert throttle.status("a").attempts == 2


def test_attempts_in_flight_are_not_evicted(clock: FakeClock) -> None:
    storage = MemoryStorage(clock=clock, max_keys=5)
    lockout = LoginLockout(LockoutConfig(max_failures=2), storage=storage)
    held = [lockout.attempt("victim") for _ in range(2)]
    assert all(attempt.granted for attempt in held)
    for i in range(100):  # first failures: plain counters
        lockout.record_failure(f"attacker-{i}")
    assert not lockout.attempt("victim").granted


def test_a_full_store_protects_new_keys_with_a_shared_bucket(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    storage = MemoryStorage(clock=clock, max_keys=10)
    lockout = LoginLockout(POLICY, storage=storage)
    for i in range(10):  # one failure each: counts that must not be lost
        lockout.record_failure(f"account-{i}")
    with caplog.at_level("WARNING", logger="flask_lockout"):
        # New keys share one bucket: two failures across them lock them all.
        assert lockout.record_failure("new-a") == (False, 0)
        assert lockout.record_failure("new-b") == (True, 60)
        assert lockout.attempt("new-c").locked
        for i in range(100):
            lockout.record_failure(f"flood-{i}")
    warnings = [r.message for r in caplog.records if "overflow" in r.message]
    assert len(warnings) == 1 and "LOCKOUT_MEMORY_MAX_KEYS" in warnings[0]
    # Every failure count survived the flood: one more locks each account.
    assert all(lockout.record_failure(f"account-{i}") == (True, 60) for i in range(10))


def test_a_flood_never_resets_a_failure_count(clock: FakeClock) -> None:
    """The docs' OTP recipe: a 300-key store, filled with locked junk keys,
    must not forget the victim's count (it took 1000 codes before)."""
    storage = MemoryStorage(clock=clock, max_keys=300)
    lockout = LoginLockout(LockoutConfig(max_failures=5), storage=storage)
    for _ in range(4):
        lockout.record_failure("otp:user:victim")
    for i in range(2000):
        lockout.record_failure(f"otp:user:junk-{i}")
    guesses = 0
    while lockout.attempt("otp:user:victim").granted:
        guesses += 1
    assert guesses == 1


def test_a_reset_clears_one_key_of_one_kind(clock: FakeClock) -> None:
    storage = MemoryStorage(clock=clock)
    limits = SlidingWindowStore(storage)
    # Keys that share a tail or a head with "a", and every kind under "a".
    keys = ("a", "x:a", "a:x")
    for key in keys:
        storage.lockout_failure(key, POLICY)
        storage.throttle_hit(key, 60)
        for limit in ("1/min", "1/hour"):
            limits.hit(key, limit)
    limits.reset("a")
    storage.lockout_reset("x:a")
    storage.throttle_reset("a:x")
    assert limits.hit("a", "1/min").allowed and limits.hit("a", "1/hour").allowed
    assert not limits.hit("x:a", "1/min").allowed
    assert not limits.hit("a:x", "1/hour").allowed
    assert [storage.lockout_status(k, POLICY).failures for k in keys] == [1, 0, 1]
    assert [storage.throttle_status(k).attempts for k in keys] == [1, 1, 0]
    assert sorted(storage.lockout_keys()) == ["a", "a:x"]


def test_memory_store_is_thread_safe(clock: FakeClock) -> None:
    import threading

    storage = MemoryStorage(clock=clock)
    throttle = AttemptThrottle(storage, 10**9, 60)

    def work() -> None:
        for _ in range(2000):
            throttle.hit("shared")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert throttle.status("shared").attempts == 16000


# -- the URI factory -----------------------------------------------------------


def test_storage_from_uri_schemes() -> None:
    assert isinstance(storage_from_uri("memory://"), MemoryStorage)
    for uri in (
        "redis://127.0.0.1:1/0",
        "rediss://127.0.0.1:1/0",
        "unix:///tmp/none.sock",
        "redis+cluster://127.0.0.1:1,127.0.0.1:2",
        "valkey://127.0.0.1:1/0",
    ):
        # Nothing connects yet: the app starts while Redis is down.
        assert isinstance(storage_from_uri(uri), RedisStorage)
    bounded = storage_from_uri("memory://", max_keys=7)
    assert isinstance(bounded, MemoryStorage) and bounded.max_keys == 7


@pytest.mark.parametrize(
    "uri", ["mongodb://x", "localhost:6379", "", None, "memcached://x"]
)
def test_unknown_uri_names_the_setting(uri: object) -> None:
    with pytest.raises(ConfigurationError, match="LOCKOUT_STORAGE_URI"):
        storage_from_uri(uri)  # type: ignore[arg-type]


def test_bad_cluster_node_names_the_setting() -> None:
    from flask_lockout import StorageError

    with pytest.raises(ConfigurationError, match="LOCKOUT_STORAGE_URI"):
        storage_from_uri("redis+cluster://127.0.0.1:1,nonsense")
    assert not isinstance(ConfigurationError("x"), StorageError)


def test_as_storage_accepts_stores_uris_and_clients() -> None:
    import fakeredis

    memory = MemoryStorage()
    assert as_storage(memory) is memory
    assert isinstance(as_storage("memory://"), MemoryStorage)
    assert isinstance(as_storage(fakeredis.FakeRedis()), RedisStorage)
    with pytest.raises(TypeError, match="Redis client"):
        storage_from_client(object())


@pytest.mark.parametrize("bad", [0, -5, 1.5, True])
def test_max_keys_must_be_positive(bad: object) -> None:
    with pytest.raises(ValueError, match="max_keys"):
        MemoryStorage(max_keys=bad)  # type: ignore[arg-type]


def test_a_lone_failure_is_held_small_and_comes_back_whole(clock: FakeClock) -> None:
    from flask_lockout.policy import LockRecord
    from flask_lockout.storage.memory import _compact, _Counter, _expand

    record = LockRecord()
    record.failures, record.total = 1, 1
    record.window_start = record.last_failure = 100.0
    record.expires_at = 1000.0
    small = _compact(record)
    assert isinstance(small, _Counter)
    assert _expand(small) == record
