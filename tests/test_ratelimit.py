from __future__ import annotations

import pytest

from flask_lockout import Limit, SlidingWindowStore, parse_limit, parse_limits
from flask_lockout.limits import sliding_window_decision

from .conftest import Backend, FakeClock

# -- parsing --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5/min", Limit(5, 60)),
        ("5/minute", Limit(5, 60)),
        ("5/minutes", Limit(5, 60)),
        ("1/sec", Limit(1, 1)),
        ("2/second", Limit(2, 1)),
        ("10/hour", Limit(10, 3600)),
        ("100/day", Limit(100, 86400)),
        ("100/days", Limit(100, 86400)),
        ("100/15min", Limit(100, 900)),
        (" 3 / 2 hours ", Limit(3, 7200)),
        ("10 per hour", Limit(10, 3600)),
        ("7/MIN", Limit(7, 60)),
    ],
)
def test_parse_limit(text: str, expected: Limit) -> None:
    assert parse_limit(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "5",
        "5/",
        "/min",
        "0/min",
        "-1/min",
        "5/fortnight",
        "5/m",
        "5/0min",
        "5.5/min",
        "５/min",  # full-width digit
        "5/min;",
        "5/min extra",
        "5/400day",
        "99999999999/min",
    ],
)
def test_parse_limit_rejects_malformed(text: str) -> None:
    with pytest.raises(ValueError, match="Invalid rate limit"):
        parse_limit(text)


def test_a_limit_prints_as_it_parses() -> None:
    for text in ("5/minute", "100/15minute", "3/2hour", "7/day", "9/45second"):
        assert str(parse_limit(text)) == text
        assert parse_limit(str(parse_limit(text))) == parse_limit(text)


def test_parse_limits_splits_on_semicolons() -> None:
    assert parse_limits("5/min;100/day") == (Limit(5, 60), Limit(100, 86400))
    assert parse_limits("5/min; 100/day;") == (Limit(5, 60), Limit(100, 86400))
    for bad in ["", ";", "5/min;oops", None, 5]:
        with pytest.raises(ValueError):
            parse_limits(bad)  # type: ignore[arg-type]


# -- the sliding window arithmetic ------------------------------------------------


def test_previous_window_is_weighted_by_its_overlap() -> None:
    limit = Limit(10, 60)
    # 30 s into the window: half of the previous window's 10 hits still count.
    decision = sliding_window_decision(limit, current=2, previous=10, elapsed=30)
    assert decision.allowed and decision.remaining == 2
    last = sliding_window_decision(limit, current=4, previous=10, elapsed=30)
    assert last.allowed and last.remaining == 0
    refused = sliding_window_decision(limit, current=5, previous=10, elapsed=30)
    assert not refused.allowed
    # 5 + 10 * (60 - t) / 60 + 1 <= 10 once t >= 36 s: 6 s from now.
    assert refused.retry_after == pytest.approx(6)


def test_full_current_window_waits_past_the_window_end() -> None:
    decision = sliding_window_decision(Limit(5, 60), current=5, previous=0, elapsed=10)
    # 50 s to the next window, then 5 * (1 - f) + 1 <= 5 needs f >= 0.2: 12 s.
    assert not decision.allowed
    assert decision.retry_after == pytest.approx(62)


# -- every store ------------------------------------------------------------------


def test_allows_exactly_the_limit_then_refuses(backend: Backend) -> None:
    store = SlidingWindowStore(backend.storage)
    results = [store.hit("k", "3/min") for _ in range(4)]
    assert [r.allowed for r in results] == [True, True, True, False]
    assert [r.remaining for r in results] == [2, 1, 0, 0]
    assert results[0].limit == 3
    assert 0 < results[3].retry_after <= 120


def test_a_limit_named_twice_is_one_limit(backend: Backend) -> None:
    store = SlidingWindowStore(backend.storage)
    results = [store.hit("k", "3/min;3/minute") for _ in range(4)]
    assert [r.allowed for r in results] == [True, True, True, False]


def test_hit_returns_allowed_remaining_retry_after(backend: Backend) -> None:
    store = SlidingWindowStore(backend.storage)
    allowed, remaining, retry_after = store.hit("k", "1/minute")
    assert (allowed, remaining, retry_after) == (True, 0, 0.0)
    allowed, remaining, retry_after = store.hit("k", "1/minute")
    assert not allowed and remaining == 0 and 0 < retry_after <= 120


@pytest.mark.clocked
def test_a_refused_hit_consumes_nothing(backend: Backend) -> None:
    store = SlidingWindowStore(backend.storage)
    for _ in range(2):
        assert store.hit("k", "2/sec").allowed
    for _ in range(20):
        refused = store.hit("k", "2/sec")
        assert not refused.allowed
    # Had the refusals counted, the wait would grow; it does not.
    assert refused.retry_after <= 2
    backend.advance(refused.retry_after + 0.05)
    assert store.hit("k", "2/sec").allowed


def test_retry_after_is_honest(clock: FakeClock) -> None:
    from flask_lockout import MemoryStorage

    store = SlidingWindowStore(MemoryStorage(clock=clock))
    clock.now = 600.0 + 10  # 10 s into a one-minute window
    for _ in range(5):
        store.hit("k", "5/min")
    refused = store.hit("k", "5/min")
    assert refused.retry_after == pytest.approx(62)
    clock.advance(refused.retry_after - 0.5)
    assert not store.hit("k", "5/min").allowed
    clock.advance(0.6)
    assert store.hit("k", "5/min").allowed


@pytest.mark.clocked
def test_several_limits_all_must_pass_and_refusal_consumes_none(
    backend: Backend,
) -> None:
    store = SlidingWindowStore(backend.storage)
    limits = parse_limits("2/sec;3/hour")
    assert store.hit("k", limits).allowed
    assert store.hit("k", limits).allowed
    refused = store.hit("k", limits)
    assert not refused.allowed and refused.limit == 2
    backend.advance(2.05)
    third = store.hit("k", limits)
    assert third.allowed and third.remaining == 0 and third.limit == 3
    backend.advance(2.05)
    blocked = store.hit("k", limits)
    assert not blocked.allowed and blocked.limit == 3
    # At least a third of the hour: 3 hits must decay to 2 allowed.
    assert blocked.retry_after > 1200


def test_reset_one_key_or_all(backend: Backend) -> None:
    store = SlidingWindowStore(backend.storage)
    for key in ("a", "b", "a*"):
        store.hit(key, "1/min")
        assert not store.hit(key, "1/min").allowed
    store.reset("a")
    assert store.hit("a", "1/min").allowed
    assert not store.hit("a*", "1/min").allowed
    store.reset()
    assert store.hit("b", "1/min").allowed
    assert store.hit("a*", "1/min").allowed


def test_keys_share_nothing(backend: Backend) -> None:
    store = SlidingWindowStore(backend.storage)
    assert store.hit("a", "1/min").allowed
    assert store.hit("b", "1/min").allowed
    assert store.hit("a", "1/hour").allowed  # another limit, another window


def test_hit_rejects_a_bad_limit() -> None:
    store = SlidingWindowStore()
    with pytest.raises(ValueError):
        store.hit("k", "lots")
    with pytest.raises(ValueError):
        store.hit("k", [])
