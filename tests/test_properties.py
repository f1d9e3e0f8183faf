"""Property tests: every store against a reference model of DESIGN §2.1, and
the Lua scripts against the Python memory store (fakeredis runs the real
scripts). Time moves in whole seconds so milliseconds and seconds agree
exactly."""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from unittest import mock

import fakeredis
from hypothesis import given, settings
from hypothesis import strategies as st

from flask_lockout import (
    AttemptThrottle,
    LockoutConfig,
    LoginLockout,
    MemoryStorage,
    RedisStorage,
    SlidingWindowStore,
)
from flask_lockout.limits import Limit
from flask_lockout.policy import Outcome
from flask_lockout.storage.base import AttemptKey, Settlement

from .conftest import FakeClock

KEYS = ("a", "b")


@dataclass
class ModelKey:
    failures: int = 0
    window_start: float = 0
    lock_number: int = 0
    locked_until: float = 0
    last_failure: float = 0


class Model:
    """DESIGN §2.1 written out plainly, for one policy."""

    def __init__(self, policy: LockoutConfig) -> None:
        self.policy = policy
        self.keys: dict[str, ModelKey] = {}

    def _current(self, key: str, now: float) -> ModelKey:
        state = self.keys.setdefault(key, ModelKey())
        p = self.policy
        if state.lock_number:
            clean_at = max(
                state.last_failure + p.reset_after_seconds, state.locked_until
            )
        elif state.failures and p.window_from_last_failure:
            clean_at = state.last_failure + p.window_seconds
        elif state.failures:
            clean_at = state.window_start + p.window_seconds
        else:
            clean_at = -math.inf
        if now >= clean_at:
            state = self.keys[key] = ModelKey()
        return state

    def _answer(self, state: ModelKey, now: float) -> tuple[bool, int]:
        if state.locked_until > now:
            return True, math.ceil(state.locked_until - now)
        return False, 0

    def is_locked(self, key: str, now: float) -> tuple[bool, int]:
        return self._answer(self._current(key, now), now)

    def failure(self, key: str, now: float) -> tuple[bool, int]:
        state = self._current(key, now)
        if state.locked_until > now:
            return self._answer(state, now)
        p = self.policy
        state.last_failure = now
        if state.lock_number:
            state.lock_number += 1
        else:
            if state.failures == 0:
                state.window_start = now
            state.failures += 1
            if state.failures < p.max_failures:
                return False, 0
            state.failures = 0
            state.lock_number = 1
        n = state.lock_number
        seconds = min(
            p.base_lock_seconds * p.backoff_multiplier ** (n - 1), p.max_lock_seconds
        )
        state.locked_until = now + seconds
        return self._answer(state, now)

    def success(self, key: str) -> None:
        self.keys.pop(key, None)


policies = st.builds(
    LockoutConfig,
    max_failures=st.integers(1, 4),
    window_seconds=st.integers(1, 30),
    base_lock_seconds=st.integers(1, 10),
    backoff_multiplier=st.sampled_from([1, 2, 3]),
    max_lock_seconds=st.integers(10, 120),
    reset_after_seconds=st.integers(1, 200),
    window_from_last_failure=st.booleans(),
)
operations = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["fail", "success", "check"]), st.sampled_from(KEYS)),
        st.tuples(st.just("advance"), st.integers(0, 90)),
    ),
    max_size=60,
)


@contextmanager
def stores() -> Any:
    """A memory store and a fakeredis store, both on one stepped clock."""
    clock = FakeClock(1_700_000_000.0)
    with mock.patch.object(time, "time", clock):
        yield (
            clock,
            [
                MemoryStorage(clock=clock),
                RedisStorage(fakeredis.FakeRedis(), prefix="prop"),
            ],
        )


@settings(max_examples=300, deadline=None)
@given(policy=policies, ops=operations)
def test_lockout_matches_the_model(
    policy: LockoutConfig, ops: list[tuple[str, Any]]
) -> None:
    with stores() as (clock, storages):
        engines = [LoginLockout(policy, storage=s) for s in storages]
        model = Model(policy)
        for op, arg in ops:
            if op == "advance":
                clock.advance(arg)
                continue
            now = clock()
            if op == "fail":
                expected = model.failure(arg, now)
                answers = [engine.record_failure(arg) for engine in engines]
            elif op == "success":
                model.success(arg)
                for engine in engines:
                    engine.record_success(arg)
                expected = model.is_locked(arg, now)
                answers = [engine.is_locked(arg) for engine in engines]
            else:
                expected = model.is_locked(arg, now)
                answers = [engine.is_locked(arg) for engine in engines]
            assert answers == [expected, expected], (op, arg, now)


limit_sets = st.lists(
    st.builds(
        Limit, count=st.integers(1, 6), period_seconds=st.sampled_from([1, 5, 60])
    ),
    min_size=1,
    max_size=2,
    unique_by=lambda limit: limit.period_seconds,
)
hits = st.lists(
    st.one_of(st.just(("hit", 0)), st.tuples(st.just("advance"), st.integers(0, 70))),
    max_size=60,
)


def same_result(memory: Any, redis: Any) -> bool:
    return (
        memory.allowed == redis.allowed
        and memory.remaining == redis.remaining
        and memory.limit == redis.limit
        and abs(memory.retry_after - redis.retry_after) <= 0.002
    )


@settings(max_examples=150, deadline=None)
@given(limits=limit_sets, ops=hits)
def test_sliding_window_lua_matches_python(
    limits: list[Limit], ops: list[tuple[str, int]]
) -> None:
    with stores() as (clock, storages):
        memory, redis = (SlidingWindowStore(s) for s in storages)
        allowed_at: list[float] = []
        for op, arg in ops:
            if op == "advance":
                clock.advance(arg)
                continue
            first, second = memory.hit("k", limits), redis.hit("k", limits)
            assert same_result(first, second), (first, second, clock())
            if first.allowed:
                allowed_at.append(clock())
        # Never more than twice a limit in any one of its periods: the
        # sliding window's worst case at window edges.
        for limit in limits:
            for start in allowed_at:
                inside = [
                    t for t in allowed_at if start <= t < start + limit.period_seconds
                ]
                assert len(inside) <= 2 * limit.count


@settings(max_examples=100, deadline=None)
@given(
    max_attempts=st.integers(1, 5),
    window=st.integers(1, 30),
    ops=st.lists(
        st.one_of(
            st.just(("hit", 0)), st.tuples(st.just("advance"), st.integers(0, 40))
        ),
        max_size=40,
    ),
)
def test_throttle_lua_matches_python(
    max_attempts: int, window: int, ops: list[tuple[str, int]]
) -> None:
    with stores() as (clock, storages):
        throttles = [AttemptThrottle(s, max_attempts, window) for s in storages]
        for op, arg in ops:
            if op == "advance":
                clock.advance(arg)
                continue
            first, second = (throttle.hit("k") for throttle in throttles)
            assert first == second


#: A reservation's steps: reserve (key, spelling), settle pending attempt i
#: with an outcome, advance the clock, or read a key's state.
reservation_steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("reserve"), st.sampled_from(KEYS), st.sampled_from(["", "x", "y"])
        ),
        st.tuples(
            st.just("settle"),
            st.integers(0, 5),
            st.sampled_from(
                [Outcome.FAILURE, Outcome.RELEASE, Outcome.UNKNOWN, Outcome.SUCCESS]
            ),
        ),
        # The same give-back sent again (a command retried after a dropped
        # connection): it must change nothing.
        st.tuples(st.just("again"), st.integers(0, 5), st.just("")),
        st.tuples(st.just("advance"), st.integers(0, 90), st.just("")),
    ),
    max_size=50,
)


@settings(max_examples=300, deadline=None)
@given(policy=policies, steps=reservation_steps)
def test_reservations_in_lua_match_python(
    policy: LockoutConfig, steps: list[tuple[str, Any, Any]]
) -> None:
    """Reserving, giving back (exactly, once per window, or forgiving a
    spelling), giving back again, and reading state: the script and the
    memory store agree at every step, and each settles what it reserved with
    its own receipts."""
    with stores() as (clock, storages):
        # Per store: the attempts not settled yet, (token, key, spelling,
        # receipt), in the same order for both; and those settled, with how.
        pending: list[list[tuple[str, str, str, Any]]] = [[], []]
        settled: list[list[tuple[str, Settlement]]] = [[], []]
        for number, (op, arg, extra) in enumerate(steps):
            if op == "advance":
                clock.advance(arg)
            elif op == "reserve":
                token = f"t{number}"
                answers = [
                    s.lockout_reserve_all([AttemptKey(arg, extra)], policy, token, 30)[
                        0
                    ]
                    for s in storages
                ]
                first, second = answers
                assert first[:3] == second[:3], (op, arg, clock())
                if first.granted:
                    for queue, answer in zip(pending, answers, strict=True):
                        queue.append((token, arg, extra, answer.receipt))
            elif op == "settle" and arg < len(pending[0]):
                for store, queue, done in zip(storages, pending, settled, strict=True):
                    token, key, spelling, receipt = queue.pop(arg)
                    settlement = Settlement(key, extra, spelling, receipt)
                    store.lockout_settle_all([settlement], policy, token)
                    done.append((token, settlement))
            elif op == "again" and arg < len(settled[0]):
                for store, done in zip(storages, settled, strict=True):
                    token, settlement = done[arg]
                    store.lockout_settle_all([settlement], policy, token)
            for key in KEYS:
                states = [s.lockout_status(key, policy) for s in storages]
                assert states[0] == states[1], (op, arg, extra, key, clock())
