"""Sliding-window rate limits on a store, independent of Flask.

The arithmetic is :func:`flask_lockout.limits.sliding_window_decision`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from .limits import Limit, RateLimitResult, as_limits
from .storage.base import RateLimitStorage
from .storage.factory import as_storage


class RateLimitStore(Protocol):
    """A store for sliding-window rate limits.

    ``hit`` counts one hit against every limit given, atomically: when any
    limit refuses, nothing is consumed. ``reset(None)`` clears the whole store.

    >>> from flask_lockout import parse_limits
    >>> store: RateLimitStore = SlidingWindowStore()
    >>> [store.hit("k", parse_limits("1/minute")).allowed for _ in range(2)]
    [True, False]
    """

    def hit(self, key: str, limit: Limit | Sequence[Limit]) -> RateLimitResult: ...

    def reset(self, key: str | None = None) -> None: ...


class SlidingWindowStore:
    """A :class:`~flask_lockout.RateLimitStore` on a bundled store.

    :param storage: ``MemoryStorage`` / ``RedisStorage``, a storage URI or a
        Redis client. Defaults to a new in-memory store.

    >>> store = SlidingWindowStore()
    >>> store.hit("api:ip:203.0.113.7", "2/min").allowed
    True
    """

    def __init__(self, storage: object = "memory://") -> None:
        self.storage: RateLimitStorage = as_storage(storage)

    def hit(self, key: str, limit: Limit | Sequence[Limit] | str) -> RateLimitResult:
        """Count one hit on ``key`` against every limit, or none if any refuses."""
        return self.storage.rate_limit_hit_many([key], as_limits(limit))

    def reset(self, key: str | None = None) -> None:
        """Clear ``key``, or every rate-limit window of this store when None."""
        self.storage.rate_limit_reset(key)
