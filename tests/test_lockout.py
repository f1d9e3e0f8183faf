from __future__ import annotations

import sys

import pytest

from flask_lockout import LockoutConfig, LoginLockout, MemoryStorage
from flask_lockout.policy import (
    BACKOFF_SCHEDULE_LENGTH,
    MAX_POLICY_SECONDS,
    MAX_SPELLINGS,
    Outcome,
    reservation_token,
)
from flask_lockout.storage.base import AttemptKey, Settlement

from .conftest import Backend, FakeClock

# Short real durations so the same tests run against a real Redis clock.
FAST = dict(
    max_failures=3,
    window_seconds=2,
    base_lock_seconds=1,
    backoff_multiplier=2.0,
    max_lock_seconds=4,
    reset_after_seconds=5,
)


def make(backend: Backend, **overrides: object) -> LoginLockout:
    config = LockoutConfig(**{**FAST, **overrides})  # type: ignore[arg-type]
    return LoginLockout(config, storage=backend.storage)


# -- configuration ------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_failures", 0),
        ("max_failures", 2.5),
        ("max_failures", True),
        ("window_seconds", 0),
        ("window_seconds", -1),
        ("window_seconds", float("nan")),
        ("base_lock_seconds", 0),
        ("backoff_multiplier", 0.5),
        ("backoff_multiplier", float("inf")),
        ("max_lock_seconds", 30),  # below base_lock_seconds=60
        ("reset_after_seconds", 0),
        ("backoff", "not callable"),
    ],
)
def test_invalid_config_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        LockoutConfig(**{field: value})  # type: ignore[arg-type]


def test_backoff_returning_nonsense_is_rejected_at_config_time() -> None:
    with pytest.raises(ValueError, match=r"backoff\(3\)"):
        LockoutConfig(backoff=lambda n: 10 if n < 3 else 0)


def test_lock_seconds_never_overflows() -> None:
    config = LockoutConfig(
        base_lock_seconds=60, backoff_multiplier=10, max_lock_seconds=3600
    )
    assert config.lock_seconds(1) == 60
    assert config.lock_seconds(2) == 600
    assert config.lock_seconds(3) == 3600
    assert config.lock_seconds(10**9) == 3600


def test_custom_backoff_is_capped_and_reused_past_the_schedule() -> None:
    config = LockoutConfig(backoff=lambda n: 60 * n, max_lock_seconds=600)
    assert [config.lock_seconds(n) for n in (1, 2, 10, 11)] == [60, 120, 600, 600]
    linear = LockoutConfig(
        backoff=lambda n: n, max_lock_seconds=10**6, base_lock_seconds=1
    )
    assert linear.lock_seconds(BACKOFF_SCHEDULE_LENGTH + 50) == BACKOFF_SCHEDULE_LENGTH


def test_clock_and_backend_are_exclusive(clock: FakeClock) -> None:
    other = LoginLockout()
    with pytest.raises(ValueError, match="backend"):
        LoginLockout(LockoutConfig(backend=other.backend), clock=clock)
    with pytest.raises(ValueError, match="clock"):
        LoginLockout(clock=clock, storage=MemoryStorage())


# -- the policy, on every store -----------------------------------------------


def test_the_max_failures_th_failure_locks_for_base_lock(backend: Backend) -> None:
    lockout = make(backend)
    assert lockout.is_locked("k") == (False, 0)
    assert lockout.record_failure("k") == (False, 0)
    assert lockout.record_failure("k") == (False, 0)
    assert lockout.record_failure("k") == (True, 1)
    assert lockout.is_locked("k") == (True, 1)


@pytest.mark.clocked
def test_failure_while_locked_changes_nothing(backend: Backend) -> None:
    lockout = make(backend, base_lock_seconds=2, max_lock_seconds=8)
    for _ in range(3):
        lockout.record_failure("k")
    for _ in range(5):
        assert lockout.record_failure("k") == (True, 2)
    backend.advance(2.1)
    assert lockout.is_locked("k") == (False, 0)
    # Still the first lock ended: the next failure is lock number 2 (2 * 2 s).
    assert lockout.record_failure("k") == (True, 4)


@pytest.mark.clocked
def test_probation_locks_again_on_every_failure_with_backoff(backend: Backend) -> None:
    lockout = make(backend)
    for _ in range(3):
        lockout.record_failure("k")
    expected = [2, 4, 4]  # 1 * 2, 1 * 4, capped at max_lock_seconds=4
    for seconds in [1, *expected[:-1]]:
        backend.advance(seconds + 0.1)
        assert lockout.is_locked("k") == (False, 0)
        assert lockout.record_failure("k") == (True, expected.pop(0))


def test_is_locked_never_changes_state(backend: Backend) -> None:
    lockout = make(backend)
    lockout.record_failure("k")
    lockout.record_failure("k")
    for _ in range(10):
        assert lockout.is_locked("k") == (False, 0)
    assert lockout.record_failure("k") == (True, 1)


def test_failures_outside_the_window_do_not_add_up(backend: Backend) -> None:
    lockout = make(backend)
    lockout.record_failure("k")
    lockout.record_failure("k")
    backend.advance(2.1)  # window_seconds=2 from the first failure
    assert lockout.record_failure("k") == (False, 0)
    assert lockout.record_failure("k") == (False, 0)
    assert lockout.record_failure("k") == (True, 1)


def test_success_clears_failures_locks_and_probation(backend: Backend) -> None:
    lockout = make(backend)
    for _ in range(3):
        lockout.record_failure("k")
    lockout.record_success("k")
    assert lockout.is_locked("k") == (False, 0)
    assert lockout.record_failure("k") == (False, 0)  # clean: no probation


@pytest.mark.clocked
def test_key_is_clean_after_reset_after_without_failures(backend: Backend) -> None:
    lockout = make(backend, reset_after_seconds=2)
    for _ in range(3):
        lockout.record_failure("k")
    backend.advance(1.1)
    # Probation: one failure locks again.
    assert lockout.record_failure("k") == (True, 2)
    backend.advance(2.1 + 0.1)  # lock over and reset_after since last failure
    assert lockout.record_failure("k") == (False, 0)


def test_retry_after_is_rounded_up(backend: Backend) -> None:
    lockout = make(backend, base_lock_seconds=1.5, max_lock_seconds=4)
    for _ in range(3):
        lockout.record_failure("k")
    assert lockout.is_locked("k") == (True, 2)


@pytest.mark.clocked
def test_custom_backoff_drives_the_locks(backend: Backend) -> None:
    lockout = make(
        backend, backoff=lambda n: [1, 3, 2][min(n, 3) - 1], max_lock_seconds=2.5
    )
    for _ in range(3):
        lockout.record_failure("k")
    assert lockout.is_locked("k") == (True, 1)
    backend.advance(1.1)
    assert lockout.record_failure("k") == (True, 3)  # 3 s capped to 2.5, rounded up
    backend.advance(2.6)
    assert lockout.record_failure("k") == (True, 2)


def test_keys_are_independent_including_hostile_ones(backend: Backend) -> None:
    lockout = make(backend, max_failures=1)
    hostile = ["a{b}c", "x" * 5000, "ünï\u0000code", "a*?[]\\", "{", "}"]
    for key in hostile:
        assert lockout.record_failure(key) == (True, 1)
    for key in ["a", "x" * 4999, "unicode", "b{b}c"]:
        assert lockout.is_locked(key) == (False, 0)


# -- reservations ---------------------------------------------------------------


def test_an_attempt_counts_as_a_failure_when_it_is_reserved(
    backend: Backend,
) -> None:
    lockout = make(backend)
    lockout.record_failure("k")  # two failures left before the lock
    first, second, third = (lockout.attempt("k") for _ in range(3))
    assert first.granted and second.granted
    # The second attempt was the last the policy allows: it locked the key.
    assert (third.granted, third.locked, third.retry_after) == (False, True, 1)
    assert second.failed() == (True, 1)
    # Giving back an older attempt once a lock came since changes nothing.
    first.release()
    assert lockout.is_locked("k") == (True, 1)


def test_giving_back_the_last_attempt_undoes_it_exactly(backend: Backend) -> None:
    lockout = make(backend)
    lockout.record_failure("k")
    lockout.record_failure("k")
    attempt = lockout.attempt("k")
    assert attempt.granted and lockout.is_locked("k") == (True, 1)
    attempt.release()  # no verdict: the lock it made is undone
    assert lockout.is_locked("k") == (False, 0)
    assert lockout.attempt("k").failed() == (True, 1)


def test_a_give_back_sent_twice_gives_back_once(backend: Backend) -> None:
    # As when a client sends a command again after a dropped connection.
    policy = LockoutConfig(max_failures=10)
    [mine] = backend.storage.lockout_reserve_all([AttemptKey("k")], policy, "t", 30)
    for token in ("a", "b", "c"):
        backend.storage.lockout_reserve_all([AttemptKey("k")], policy, token, 30)
    release = [Settlement("k", Outcome.RELEASE, "", mine.receipt)]
    for _ in range(3):
        backend.storage.lockout_settle_all(release, policy, "t")
    assert backend.storage.lockout_status("k", policy).failures == 3


def test_each_of_the_last_eight_give_backs_sent_again_gives_back_nothing(
    backend: Backend,
) -> None:
    policy = LockoutConfig(max_failures=20)
    settled = []
    for number in range(12):
        token = f"t{number}"
        [mine] = backend.storage.lockout_reserve_all(
            [AttemptKey("k")], policy, token, 30
        )
        backend.storage.lockout_reserve_all([AttemptKey("k")], policy, token + "x", 30)
        release = [Settlement("k", Outcome.RELEASE, "", mine.receipt)]
        backend.storage.lockout_settle_all(release, policy, token)
        settled.append((release, token))
    assert backend.storage.lockout_status("k", policy).failures == 12
    for release, token in settled[-8:]:
        backend.storage.lockout_settle_all(release, policy, token)
        assert backend.storage.lockout_status("k", policy).failures == 12


def test_a_lock_of_ten_years_holds_and_forever_is_refused(backend: Backend) -> None:
    longest = MAX_POLICY_SECONDS
    policy = LockoutConfig(
        max_failures=1,
        base_lock_seconds=longest,
        max_lock_seconds=longest,
        reset_after_seconds=longest,
        window_seconds=longest,
    )
    lockout = LoginLockout(policy, storage=backend.storage)
    assert lockout.record_failure("k") == (True, longest)
    assert lockout.is_locked("k") == (True, longest)
    # Redis keeps 64-bit milliseconds: sys.maxsize would wrap to the past.
    with pytest.raises(ValueError, match="base_lock_seconds must be at most"):
        LockoutConfig(base_lock_seconds=sys.maxsize, max_lock_seconds=sys.maxsize)


def test_giving_back_an_attempt_keeps_a_failure_recorded_after_it(
    backend: Backend,
) -> None:
    lockout = make(backend, max_failures=5)
    lockout.record_failure("k")
    attempt = lockout.attempt("k")
    lockout.record_failure("k")  # not a reservation: still came after it
    attempt.release()  # gives back its own failure only, not the later one
    assert [lockout.record_failure("k")[0] for _ in range(3)] == [False, False, True]


@pytest.mark.clocked
def test_an_attempt_outliving_its_view_stays_a_failure(backend: Backend) -> None:
    lockout = make(backend, max_failures=2, window_seconds=60)
    slow = lockout.attempt("k", reservation_seconds=0.5)
    backend.advance(0.7)
    slow.release()  # too late to give back: it counts
    assert lockout.attempt("k").failed() == (True, 1)


@pytest.mark.clocked
def test_probation_allows_one_attempt_at_a_time(backend: Backend) -> None:
    lockout = make(backend)
    for _ in range(3):
        lockout.record_failure("k")
    backend.advance(1.1)
    one, two = lockout.attempt("k"), lockout.attempt("k")
    assert one.granted and not two.granted
    one.succeeded()
    assert lockout.attempt("k").granted


def test_success_clears_the_key_and_attempts_in_flight(backend: Backend) -> None:
    lockout = make(backend)
    attempts = [lockout.attempt("k") for _ in range(3)]
    assert all(a.granted for a in attempts) and lockout.is_locked("k")[0]
    attempts[0].succeeded()
    assert lockout.is_locked("k") == (False, 0)
    assert [lockout.attempt("k").granted for _ in range(4)] == [True] * 3 + [False]


def test_attempt_context_releases_an_unsettled_attempt(backend: Backend) -> None:
    lockout = make(backend, max_failures=1)
    with pytest.raises(RuntimeError, match="boom"), lockout.attempt("k") as attempt:
        assert attempt.granted
        raise RuntimeError("boom")
    with lockout.attempt("k") as again:
        assert again.granted
        assert again.failed() == (True, 1)
    with pytest.raises(RuntimeError, match="already settled"):
        again.failed()


def test_a_refused_attempt_cannot_be_settled(backend: Backend) -> None:
    lockout = make(backend, max_failures=1)
    lockout.record_failure("k")
    refused = lockout.attempt("k")
    with pytest.raises(RuntimeError, match="not granted"):
        refused.failed()


def test_custom_backend_is_used_as_is() -> None:
    calls: list[tuple[str, str]] = []

    class Recorder:
        def is_locked(self, key: str) -> tuple[bool, int]:
            calls.append(("is_locked", key))
            return False, 0

        def record_failure(self, key: str) -> tuple[bool, int]:
            calls.append(("failure", key))
            return True, 7

        def record_success(self, key: str) -> None:
            calls.append(("success", key))

    lockout = LoginLockout(LockoutConfig(backend=Recorder()))
    assert lockout.record_failure("a") == (True, 7)
    with lockout.attempt("b") as attempt:
        assert attempt.failed() == (True, 7)
    assert calls == [("failure", "a"), ("is_locked", "b"), ("failure", "b")]


def test_huge_failure_counts_on_memory(clock: FakeClock) -> None:
    config = LockoutConfig(max_failures=1, base_lock_seconds=1, max_lock_seconds=3600)
    lockout = LoginLockout(config, clock=clock)
    for _ in range(5000):
        locked, retry_after = lockout.record_failure("k")
        assert locked
        clock.advance(retry_after)
    assert retry_after == 3600


def settle(backend: Backend, key: str, spelling: str, outcome: Outcome) -> None:
    policy = LockoutConfig(max_failures=20)
    token = reservation_token()  # one per reservation, as the decorator does
    [reserved] = backend.storage.lockout_reserve_all(
        [AttemptKey(key, spelling)], policy, token, 30
    )
    backend.storage.lockout_settle_all(
        [Settlement(key, outcome, spelling, reserved.receipt)], policy, token
    )


def failures(backend: Backend, key: str) -> int:
    policy = LockoutConfig(max_failures=20)
    return int(backend.storage.lockout_status(key, policy).failures)


def test_a_success_forgives_only_its_own_spelling(backend: Backend) -> None:
    for spelling in ("ALICE", "ALICE", "ALICE", "alice"):
        settle(backend, "k", spelling, Outcome.FAILURE)
    assert failures(backend, "k") == 4
    settle(backend, "k", "alice", Outcome.SUCCESS)
    assert failures(backend, "k") == 3  # the other spelling's three stay
    settle(backend, "k", "ALICE", Outcome.SUCCESS)
    assert failures(backend, "k") == 0


def reserve(backend: Backend, key: str, spelling: str) -> tuple[str, Settlement]:
    """One reserved attempt, and the settlement that gives it back."""
    policy = LockoutConfig(max_failures=20)
    token = reservation_token()
    [reserved] = backend.storage.lockout_reserve_all(
        [AttemptKey(key, spelling)], policy, token, 30
    )
    assert reserved.granted
    return token, Settlement(key, Outcome.SUCCESS, spelling, reserved.receipt)


def succeed_all(backend: Backend, pending: list[tuple[str, Settlement]]) -> None:
    policy = LockoutConfig(max_failures=20)
    for token, settlement in pending:
        backend.storage.lockout_settle_all([settlement], policy, token)


def test_concurrent_logins_to_a_lookalike_take_back_no_guess_at_alice(
    backend: Backend,
) -> None:
    # The attacker owns "Alice" (one folded key with "alice") and signs in
    # to it three times at once after each guess at alice: the first success
    # forgives Alice's pending attempts too, which must then give nothing
    # back a second time (each took one of alice's failures away).
    for _ in range(6):
        settle(backend, "k", "alice", Outcome.FAILURE)
        succeed_all(backend, [reserve(backend, "k", "Alice") for _ in range(3)])
    assert failures(backend, "k") == 6  # was 0: unlimited guesses at alice


def test_lookalike_logins_forgiven_whole_take_back_no_later_guess(
    backend: Backend,
) -> None:
    # The same, when the first success forgives every failure of the key
    # (all were Alice's) and a guess at alice comes before the others settle.
    for _ in range(6):
        pending = [reserve(backend, "k", "Alice") for _ in range(3)]
        succeed_all(backend, pending[:1])
        settle(backend, "k", "alice", Outcome.FAILURE)
        succeed_all(backend, pending[1:])
    assert failures(backend, "k") == 6


def test_lookalike_logins_from_before_a_clean_key_take_back_nothing(
    backend: Backend,
) -> None:
    # Logins to X reserved before the key was cleaned settle after guesses
    # at alice that the full spelling cap sent to the shared count.
    pending = [reserve(backend, "k", "X") for _ in range(4)]
    succeed_all(backend, pending[:1])  # every failure was X's: clean
    settle(backend, "k", "A0", Outcome.FAILURE)
    for i in range(1, MAX_SPELLINGS):
        succeed_all(backend, [reserve(backend, "k", f"A{i}")])  # held, at 0
    for _ in range(4):
        settle(backend, "k", "alice", Outcome.FAILURE)  # past the cap
    succeed_all(backend, pending[1:])
    assert failures(backend, "k") == 5  # was 2: each old login took one back


def test_spellings_past_the_cap_are_never_forgiven(backend: Backend) -> None:
    for i in range(MAX_SPELLINGS + 2):
        settle(backend, "k", f"s{i}", Outcome.FAILURE)
    # The first spelling past the cap and the last are counted with the
    # others: a success forgives nothing, and its own attempt stays counted
    # (nobody can tell it from the others' to give it back).
    settle(backend, "k", f"s{MAX_SPELLINGS}", Outcome.SUCCESS)
    assert failures(backend, "k") == MAX_SPELLINGS + 3
    settle(backend, "k", f"s{MAX_SPELLINGS + 1}", Outcome.SUCCESS)
    assert failures(backend, "k") == MAX_SPELLINGS + 4
    settle(backend, "k", "s0", Outcome.SUCCESS)
    assert failures(backend, "k") == MAX_SPELLINGS + 3
    # The last spelling within the cap is remembered as its own.
    settle(backend, "k", f"s{MAX_SPELLINGS - 1}", Outcome.SUCCESS)
    assert failures(backend, "k") == MAX_SPELLINGS + 2
