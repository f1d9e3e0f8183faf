"""Sliding-window counter rate limits, independent of Flask.

Each limit keeps two fixed windows: the current one and the one before it.
The count of the previous window is weighted by how much of it still overlaps
the sliding window ending now, which approximates a true sliding log with two
integers per key. ``storage/lua/ratelimit.lua`` implements the same arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from .limits import Limit, parse_limits
from .storage.base import RateLimitResult, Storage


class WindowDecision(NamedTuple):
    allowed: bool
    remaining: int
    retry_after: float
    reset_after: float


def sliding_window_decision(
    limit: Limit, current: int, previous: int, elapsed: float
) -> WindowDecision:
    """Decide one hit from the two window counts.

    :param current: hits counted in the current fixed window so far.
    :param previous: hits counted in the previous fixed window.
    :param elapsed: seconds since the current window began, in ``[0, period)``.
    """
    count, period = limit.count, limit.period_seconds
    overlap = (period - elapsed) / period
    weighted = previous * overlap + current
    if weighted + 1 <= count:
        # Whole hits that still fit after this one.
        remaining = math.floor(count - 1 - weighted + 1e-9)
        reset_after = period - elapsed + period
        return WindowDecision(True, max(remaining, 0), 0.0, reset_after)
    if current + 1 > count:
        # Wait for the next window, then for this window's hits to decay.
        wait = (period - elapsed) + period * (1 - (count - 1) / current)
    else:
        # The previous window's weight must fall to what is left.
        wait = period * (1 - (count - 1 - current) / previous) - elapsed
    reset_after = (period - elapsed) + (period if current else 0)
    return WindowDecision(False, 0, max(wait, 0.001), reset_after)


def combine(
    limits: Sequence[Limit], decisions: Sequence[WindowDecision]
) -> RateLimitResult:
    """One result for several limits: refused if any refuses."""
    refused = [i for i, d in enumerate(decisions) if not d.allowed]
    if refused:
        index = max(refused, key=lambda i: decisions[i].retry_after)
        decision = decisions[index]
        return RateLimitResult(
            False,
            0,
            decision.retry_after,
            limits[index].count,
            decision.reset_after,
            index,
        )
    remaining, index = min((d.remaining, i) for i, d in enumerate(decisions))
    return RateLimitResult(
        True, remaining, 0.0, limits[index].count, decisions[index].reset_after, index
    )


def as_limits(limit: Limit | Sequence[Limit] | str) -> tuple[Limit, ...]:
    """Accept one :class:`Limit`, several, or a limit string."""
    if isinstance(limit, str):
        return parse_limits(limit)
    if isinstance(limit, Limit):
        return (limit,)
    limits = tuple(limit)
    if not limits or not all(isinstance(item, Limit) for item in limits):
        raise ValueError("Expected one or more Limit values.")
    return limits


class SlidingWindowStore:
    """A :class:`~flask_lockout.RateLimitStore` on a bundled store.

    :param storage: ``MemoryStorage`` / ``RedisStorage``, a storage URI or a
        Redis client. Defaults to a new in-memory store.

    >>> store = SlidingWindowStore()
    >>> store.hit("api:ip:203.0.113.7", parse_limits("2/min")).allowed
    True
    """

    def __init__(self, storage: object = "memory://") -> None:
        from .storage import as_storage

        self.storage: Storage = as_storage(storage)

    def hit(self, key: str, limit: Limit | Sequence[Limit] | str) -> RateLimitResult:
        """Count one hit on ``key`` against every limit, or none if any refuses."""
        return self.storage.rate_limit_hit(key, as_limits(limit))

    def reset(self, key: str | None = None) -> None:
        """Clear ``key``, or every rate-limit window of this store when None."""
        self.storage.rate_limit_reset(key)
