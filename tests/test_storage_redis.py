"""Redis-only behaviour, on the shared server and on private ones."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis
import redis.connection
from flask import Flask

from flask_lockout import (
    AttemptThrottle,
    Lockout,
    LockoutConfig,
    LoginLockout,
    RedisStorage,
    SlidingWindowStore,
    StorageError,
    StorageUnavailable,
    storage_from_uri,
)
from flask_lockout.limits import as_limits
from flask_lockout.policy import Outcome
from flask_lockout.storage.base import AttemptAsk, AttemptKey, Settlement

from .redis_proc import private_cluster, private_redis

pytestmark = pytest.mark.redis

POLICY = LockoutConfig(max_failures=3, base_lock_seconds=60)


def exercise(storage: RedisStorage, key: str = "login:email:alice@example.com") -> None:
    lockout = LoginLockout(POLICY, storage=storage)
    with lockout.attempt(key) as attempt:
        attempt.failed()
    for _ in range(3):
        lockout.record_failure(key)
    lockout.record_failure("login:ip:203.0.113.7")
    with lockout.attempt("login:ip:203.0.113.8"):
        pass  # released
    held = lockout.attempt(f"{key}:held")  # left unsettled: expires by itself
    assert held.granted
    AttemptThrottle(storage, 5, 300, namespace="otp").hit(key)
    SlidingWindowStore(storage).hit(key, "5/min;100/day")


def test_every_key_has_a_ttl(redis_client: redis.Redis, redis_prefix: str) -> None:
    exercise(RedisStorage(redis_client, prefix=redis_prefix))
    keys = list(redis_client.scan_iter(match=f"{redis_prefix}:*"))
    assert len(keys) >= 6
    for key in keys:
        assert redis_client.pttl(key) > 0, key


def test_each_decision_is_one_round_trip(
    redis_server: str, redis_prefix: str, round_trips: list[int]
) -> None:
    client = redis.Redis.from_url(redis_server)
    storage = RedisStorage(client, prefix=redis_prefix)
    lockout = LoginLockout(POLICY, storage=storage)
    throttle = AttemptThrottle(storage, 5, 300)
    limits = SlidingWindowStore(storage)
    decisions = {
        "is_locked": lambda: lockout.is_locked("k"),
        "record_failure": lambda: lockout.record_failure("k"),
        "record_success": lambda: lockout.record_success("k"),
        "attempt": lambda: lockout.attempt("k").release(),
        "throttle.hit": lambda: throttle.hit("k"),
        "throttle.status": lambda: throttle.status("k"),
        "ratelimit.hit": lambda: limits.hit("k", "5/min;100/day"),
    }
    for decide in decisions.values():
        decide()  # loads each script once
    for name, decide in decisions.items():
        round_trips[0] = 0
        decide()
        expected = 2 if name == "attempt" else 1  # reserve, then release
        assert round_trips[0] == expected, name
    client.close()
    cleanup = redis.Redis.from_url(redis_server)
    for key in cleanup.scan_iter(match=f"{redis_prefix}:*"):
        cleanup.delete(key)


def test_several_keys_reserve_and_settle_in_one_round_trip_each(
    redis_client: redis.Redis, redis_prefix: str, round_trips: list[int]
) -> None:
    storage = RedisStorage(redis_client, prefix=redis_prefix)
    keys = [AttemptKey("login:ip:203.0.113.7"), AttemptKey("login:email:a@x", "ab")]
    warm = storage.lockout_reserve_all(keys, POLICY, "warm", 30)  # scripts loaded
    release = [
        Settlement(k.key, Outcome.RELEASE, k.spelling, r.receipt)
        for k, r in zip(keys, warm, strict=True)
    ]
    storage.lockout_settle_all(release, POLICY, "warm")
    sent = round_trips
    sent[0] = 0
    granted = storage.lockout_reserve_all(keys, POLICY, "t1", 30)
    assert [g.granted for g in granted] == [True, True]
    assert sent[0] == 1
    # A wrong password needs nothing more: the reservation counted it.
    failure = [Settlement(k.key, Outcome.FAILURE) for k in keys]
    storage.lockout_settle_all(failure, POLICY, "t1")
    assert sent[0] == 1
    assert [storage.lockout_status(k.key, POLICY).failures for k in keys] == [1, 1]
    granted = storage.lockout_reserve_all(keys, POLICY, "t2", 30)
    sent[0] = 0
    success = [
        Settlement(k.key, Outcome.SUCCESS, k.spelling, r.receipt)
        for k, r in zip(keys, granted, strict=True)
    ]
    storage.lockout_settle_all(success, POLICY, "t2")
    assert sent[0] == 1


def test_failed_attempts_leave_no_growing_trail(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    # A wrong password is never settled (the reservation counted it), so an
    # address guessing all day must leave one small key, not a record each.
    storage = RedisStorage(redis_client, prefix=redis_prefix)
    policy = LockoutConfig(max_failures=10**6)
    attacker = AttemptKey("login:ip:203.0.113.7")
    for i in range(500):
        storage.lockout_reserve_all([attacker], policy, f"guess{i}", 30)
    [state] = redis_client.keys(f"{redis_prefix}:*")
    assert state.decode() == storage.storage_key(attacker.key, "lock")
    assert (redis_client.memory_usage(state) or 0) < 512
    assert storage.lockout_status(attacker.key, policy).failures == 500


def test_an_attempt_in_flight_is_given_back_after_many_others(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    storage = RedisStorage(redis_client, prefix=redis_prefix)
    policy = LockoutConfig(max_failures=10**6)
    key = AttemptKey("login:email:a@x", "typed")
    for others in (0, 1, 500):
        storage.lockout_reset(key.key)
        [mine] = storage.lockout_reserve_all([key], policy, "mine", 30)
        for i in range(others):
            storage.lockout_reserve_all([key], policy, f"other{i}", 30)
        release = [Settlement(key.key, Outcome.RELEASE, key.spelling, mine.receipt)]
        storage.lockout_settle_all(release, policy, "mine")
        # Its own failure comes off, however many came after it.
        assert storage.lockout_status(key.key, policy).failures == others


def test_batches_survive_a_script_cache_flush(need_redis_server_binary: None) -> None:
    with private_redis() as server:
        storage = storage_from_uri(server.url)
        keys = [AttemptKey(k) for k in ("a", "b", "c")]
        storage.lockout_reserve_all(keys, POLICY, "t0", 30)
        server.client().script_flush()
        granted = storage.lockout_reserve_all(keys, POLICY, "t1", 30)
        assert all(g.granted for g in granted)
        server.client().script_flush()
        storage.lockout_settle_all(
            [
                Settlement(k.key, Outcome.RELEASE, "", g.receipt)
                for k, g in zip(keys, granted, strict=True)
            ],
            POLICY,
            "t1",
        )
        assert [storage.lockout_status(k.key, POLICY).failures for k in keys] == [
            1,
            1,
            1,
        ]


def test_script_cache_flush_is_survived(need_redis_server_binary: None) -> None:
    with private_redis() as server:
        storage = storage_from_uri(server.url)
        lockout = LoginLockout(POLICY, storage=storage)
        lockout.record_failure("k")
        server.client().script_flush()
        assert lockout.record_failure("k") == (False, 0)
        assert lockout.record_failure("k") == (True, 60)


def test_outage_raises_ours_and_recovery_needs_no_restart(
    need_redis_server_binary: None,
) -> None:
    with private_redis() as server:
        storage = storage_from_uri(server.url)
        lockout = LoginLockout(POLICY, storage=storage)
        lockout.record_failure("k")
        server.stop()
        for call in (
            lambda: lockout.record_failure("k"),
            lambda: lockout.is_locked("k"),
            lambda: lockout.attempt("k"),
            storage.ping,
        ):
            with pytest.raises(StorageUnavailable):
                call()
        server.start()  # same port, empty: it keeps nothing on disk
        assert lockout.record_failure("k") == (False, 0)
        storage.ping()


def test_a_frozen_server_times_out_instead_of_hanging(
    need_redis_server_binary: None,
) -> None:
    with private_redis() as server:
        storage = storage_from_uri(server.url)
        lockout = LoginLockout(LockoutConfig(max_failures=10), storage=storage)
        lockout.record_failure("k")
        server.pause()
        try:
            with pytest.raises(StorageUnavailable):
                lockout.record_failure("k")
        finally:
            server.resume()
        # The timed-out call may still run once the server wakes; either way
        # the same storage object answers again.
        assert lockout.record_failure("k") == (False, 0)
        assert storage.lockout_status("k", lockout.config).failures in (2, 3)


def test_app_starts_and_fails_cleanly_while_redis_is_down() -> None:
    from .redis_proc import free_port

    storage = storage_from_uri(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(StorageUnavailable):
        storage.ping()


def test_flask_redis_client(redis_server: str, redis_prefix: str) -> None:
    from flask_redis import FlaskRedis

    flask_redis = FlaskRedis()
    storage = RedisStorage(flask_redis, prefix=redis_prefix)
    with pytest.raises(StorageError, match="init_app"):
        storage.ping()
    app = Flask(__name__)
    app.config["REDIS_URL"] = redis_server
    flask_redis.init_app(app)
    lockout = LoginLockout(LockoutConfig(max_failures=1), storage=flask_redis)
    # Its own storage object, built from the same FlaskRedis instance.
    assert lockout.record_failure(f"{redis_prefix}-k") == (True, 60)
    storage.ping()
    flask_redis.delete(f"lockout:{{{redis_prefix}-k}}:lock")


def test_valkey_client(redis_server: str, redis_prefix: str) -> None:
    valkey = pytest.importorskip("valkey")
    client = valkey.Valkey.from_url(redis_server.replace("redis://", "valkey://"))
    storage = RedisStorage(client, prefix=redis_prefix)
    lockout = LoginLockout(LockoutConfig(max_failures=1), storage=storage)
    assert lockout.record_failure("k") == (True, 60)
    assert SlidingWindowStore(storage).hit("k", "1/min").allowed
    via_uri = storage_from_uri(
        redis_server.replace("redis://", "valkey://"), prefix=redis_prefix
    )
    assert LoginLockout(LockoutConfig(max_failures=1), storage=via_uri).is_locked(
        "k"
    ) == (True, 60)
    client.close()
    cleanup = redis.Redis.from_url(redis_server)
    for key in cleanup.scan_iter(match=f"{redis_prefix}:*"):
        cleanup.delete(key)


def test_app_hosts_with_skewed_clocks_decide_alike(
    redis_server: str, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    honest = LoginLockout(
        POLICY,
        storage=RedisStorage(redis.Redis.from_url(redis_server), prefix=redis_prefix),
    )
    skewed = LoginLockout(
        POLICY,
        storage=RedisStorage(redis.Redis.from_url(redis_server), prefix=redis_prefix),
    )
    real_time, real_monotonic = time.time, time.monotonic

    @contextmanager
    def five_minutes_ahead() -> Iterator[None]:
        with monkeypatch.context() as patch:
            patch.setattr(time, "time", lambda: real_time() + 300)
            patch.setattr(time, "monotonic", lambda: real_monotonic() + 300)
            yield

    honest.record_failure("k")
    with five_minutes_ahead():
        assert skewed.record_failure("k") == (False, 0)
    assert honest.record_failure("k") == (True, 60)
    with five_minutes_ahead():
        assert skewed.is_locked("k") == (True, 60)
        assert SlidingWindowStore(skewed.backend.storage).hit("r", "1/min").allowed  # type: ignore[attr-defined]
    assert not SlidingWindowStore(honest.backend.storage).hit("r", "1/min").allowed  # type: ignore[attr-defined]


@pytest.mark.cluster
def test_redis_cluster(need_redis_server_binary: None) -> None:
    with private_cluster(3) as nodes:
        uri = "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in nodes)
        storage = storage_from_uri(uri)
        keys = [f"login:email:user{i}@example.com" for i in range(30)]
        for key in keys:
            exercise(storage, key)  # CROSSSLOT would raise here
        lockout = LoginLockout(POLICY, storage=storage)
        for key in keys:  # locked over the last second or two: 59 or 60 left
            locked, retry_after = lockout.is_locked(key)
            assert locked and 58 <= retry_after <= 60
        slots = {
            storage.client.keyslot(storage.storage_key(key, "lock")) for key in keys
        }
        assert len(slots) > 3  # the keys really are spread over the cluster
        batch = [AttemptKey(f"batch:{i}") for i in range(12)]  # over the nodes
        assert all(
            r.granted for r in storage.lockout_reserve_all(batch, POLICY, "t", 30)
        )
        states = [storage.lockout_status(k.key, POLICY) for k in batch]
        assert [s.failures for s in states] == [1] * 12
        limits = SlidingWindowStore(storage)
        limits.reset()  # scans every node
        assert limits.hit(keys[0], "1/min").allowed
        assert_login_flow_on(uri)


def assert_login_flow_on(uri: str) -> None:
    app = Flask(__name__)
    app.config.update(
        LOCKOUT_STORAGE_URI=uri,
        LOCKOUT_MAX_FAILURES=3,
        LOCKOUT_IP_MAX_FAILURES=3,
        LOCKOUT_FAIL_MODE="closed",
    )
    lockout = Lockout(app)

    @app.post("/login")
    @lockout.throttled("100/minute;1000/day", by=("ip", "form:email"))
    @lockout.lockout_on_failure(by=("ip", "form:email"))
    def login() -> tuple[str, int]:
        return "no", 401

    client = app.test_client()
    answers = [
        client.post("/login", data={"email": f"flow{i % 2}@example.com"})
        for i in range(6)
    ]
    # The ip key locks at its third failure; fail closed would have said 503.
    assert [a.status_code for a in answers] == [401, 401, 401, 429, 429, 429]
    assert answers[0].headers["RateLimit-Remaining"] == "99"


@pytest.mark.parametrize(
    "reply", [b"hello", 1, b"1 0 0;r", b"", b"\xff;\xfe", [b"1"]], ids=repr
)
def test_a_reply_of_the_wrong_shape_is_a_storage_error(
    reply: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    # From a faulty proxy or server: the fail mode handles it, never a 500.
    import fakeredis

    storage = RedisStorage(fakeredis.FakeRedis(), prefix="shape")
    monkeypatch.setattr(storage, "_run_many", lambda *args, **kwargs: [reply])
    attempts = [AttemptKey("login:ip:1.2.3.4", ""), AttemptKey("login:email:a", "s")]
    policy = LockoutConfig()
    with pytest.raises(StorageError, match="unexpected reply"):
        storage.lockout_attempt(
            AttemptAsk(
                attempts, policy, "t", 30, ["login:ip:1.2.3.4"], as_limits("5/minute")
            )
        )
    with pytest.raises(StorageError, match="unexpected reply"):
        storage.lockout_reserve_all(attempts, policy, "t", 30)
    with pytest.raises(StorageError, match="unexpected reply"):
        storage.rate_limit_hit_many(["login:ip:1.2.3.4"], as_limits("5/minute"))
    monkeypatch.setattr(storage, "_run", lambda *args, **kwargs: reply)
    with pytest.raises(StorageError, match="unexpected reply"):
        storage.throttle_hit("login:ip:1.2.3.4", 60)
    with pytest.raises(StorageError, match="unexpected reply"):
        storage.throttle_status("login:ip:1.2.3.4")
    if not isinstance(reply, bytes):
        with pytest.raises(StorageError, match="unexpected reply"):
            storage.token_take("hash")
