"""In-process storage: thread-safe, bounded, driven by an injectable clock."""

from __future__ import annotations

import heapq
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..ratelimit import combine, sliding_window_decision
from .base import LockState, RateLimitResult, Reservation, Storage, ThrottleCount

if TYPE_CHECKING:
    from ..limits import Limit
    from ..lockout import LockoutConfig

#: Default bound on the number of keys the memory store holds.
DEFAULT_MAX_KEYS = 100_000


@dataclass(slots=True)
class _LockRecord:
    failures: int = 0
    window_start: float = 0.0
    lock_number: int = 0
    locked_until: float = 0.0
    last_failure: float = 0.0
    state_expires: float = -math.inf
    reservations: dict[str, float] = field(default_factory=dict)

    def forget_if_clean(self, now: float) -> None:
        if now >= self.state_expires:
            self.failures = self.lock_number = 0
            self.locked_until = 0.0
            self.state_expires = -math.inf
        for token, until in list(self.reservations.items()):
            if until <= now:
                del self.reservations[token]

    def state(self, now: float) -> LockState:
        locked = self.locked_until > now
        retry_after = math.ceil(self.locked_until - now) if locked else 0
        return LockState(locked, retry_after, self.failures, self.lock_number)

    def expires_at(self) -> float:
        return max(self.state_expires, *self.reservations.values(), -math.inf)

    def protected(self, now: float) -> bool:
        # Evicting these would unlock someone or hand out extra attempts.
        return (
            self.locked_until > now or self.lock_number > 0 or bool(self.reservations)
        )


@dataclass(slots=True)
class _Entry:
    value: object
    expires_at: float


class MemoryStorage(Storage):
    """Storage in this process's memory; the default (``memory://``).

    :param clock: returns seconds; defaults to :func:`time.monotonic`. Tests
        pass a clock they can step.
    :param max_keys: the most keys held. Past it, expired keys go first, then
        the least recently used counters; locked keys, keys on probation and
        keys with attempts in flight go last, earliest expiry first, so
        flooding the store with fresh keys never unlocks anyone.

    It runs no thread: expired keys are dropped when met or when room is needed.
    Each worker process has its own; use Redis to share state between them.

    >>> from flask_lockout import LoginLockout
    >>> storage = MemoryStorage(max_keys=10_000)
    >>> LoginLockout(storage=storage).record_failure("login:alice")
    (False, 0)
    >>> len(storage)
    1
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = DEFAULT_MAX_KEYS,
        prefix: str = "lockout",
    ) -> None:
        if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
            raise ValueError(
                f"max_keys must be a whole number of at least 1, not {max_keys!r}."
            )
        self.clock = clock
        self.max_keys = max_keys
        self.prefix = prefix
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._plain: OrderedDict[str, None] = OrderedDict()
        self._expiry_heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._entries)

    # -- bounded key space --------------------------------------------------

    def _get(self, key: str, now: float) -> object | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires_at <= now:
            self._drop(key)
            return None
        if key in self._plain:
            self._plain.move_to_end(key)
        return entry.value

    def _put(
        self, key: str, value: object, expires_at: float, protected: bool, now: float
    ) -> None:
        if expires_at <= now:
            self._drop(key)
            return
        entry = self._entries.get(key)
        expiry_changed = entry is None or entry.expires_at != expires_at
        if entry is None:
            self._entries[key] = _Entry(value, expires_at)
        else:
            entry.value = value
            entry.expires_at = expires_at
        if protected:
            self._plain.pop(key, None)
        else:
            self._plain[key] = None
            self._plain.move_to_end(key)
        if expiry_changed:
            heapq.heappush(self._expiry_heap, (expires_at, key))
        if len(self._expiry_heap) > 2 * len(self._entries) + 64:
            self._expiry_heap = [(e.expires_at, k) for k, e in self._entries.items()]
            heapq.heapify(self._expiry_heap)
        if len(self._entries) > self.max_keys:
            self._evict(now, keep=key)

    def _drop(self, key: str) -> None:
        self._entries.pop(key, None)
        self._plain.pop(key, None)

    def _evict(self, now: float, keep: str) -> None:
        heap = self._expiry_heap
        while len(self._entries) > self.max_keys:
            while heap and not self._is_current(heap[0]):
                heapq.heappop(heap)
            if heap and heap[0][0] <= now:
                self._drop(heapq.heappop(heap)[1])
            elif self._plain:
                # The least recently used counter, possibly the one just written.
                self._drop(self._plain.popitem(last=False)[0])
            else:
                victim = self._earliest_protected(keep)
                if victim is None:
                    return
                self._drop(victim)

    def _is_current(self, item: tuple[float, str]) -> bool:
        entry = self._entries.get(item[1])
        return entry is not None and entry.expires_at == item[0]

    def _earliest_protected(self, keep: str) -> str | None:
        heap = self._expiry_heap
        held = []
        victim = None
        while heap:
            item = heapq.heappop(heap)
            if not self._is_current(item):
                continue
            if item[1] == keep:
                held.append(item)
                continue
            victim = item[1]
            break
        for item in held:
            heapq.heappush(heap, item)
        return victim

    # -- login lockout ------------------------------------------------------

    def _lock_record(self, key: str, now: float) -> tuple[str, _LockRecord]:
        skey = self.storage_key(key, "lock")
        record = self._get(skey, now)
        if not isinstance(record, _LockRecord):
            record = _LockRecord()
        record.forget_if_clean(now)
        return skey, record

    def _save_lock(self, skey: str, record: _LockRecord, now: float) -> None:
        self._put(skey, record, record.expires_at(), record.protected(now), now)

    def lockout_status(self, key: str, policy: LockoutConfig) -> LockState:
        with self._lock:
            now = self.clock()
            entry = self._entries.get(self.storage_key(key, "lock"))
            if entry is None or entry.expires_at <= now:
                return LockState(False, 0)
            record = entry.value
            assert isinstance(record, _LockRecord)
            if now >= record.state_expires:
                return LockState(False, 0)
            return record.state(now)

    def lockout_failure(
        self, key: str, policy: LockoutConfig, token: str | None = None
    ) -> LockState:
        with self._lock:
            now = self.clock()
            skey, record = self._lock_record(key, now)
            if token is not None:
                record.reservations.pop(token, None)
            if record.locked_until <= now:
                _count_failure(record, policy, now)
            self._save_lock(skey, record, now)
            return record.state(now)

    def lockout_success(self, key: str, token: str | None = None) -> None:
        with self._lock:
            now = self.clock()
            skey, record = self._lock_record(key, now)
            if token is not None:
                record.reservations.pop(token, None)
            record.state_expires = -math.inf
            record.forget_if_clean(now)
            self._save_lock(skey, record, now)

    def lockout_reserve(
        self, key: str, policy: LockoutConfig, token: str, ttl: float
    ) -> Reservation:
        with self._lock:
            now = self.clock()
            skey, record = self._lock_record(key, now)
            state = record.state(now)
            if state.locked:
                return Reservation(False, True, state.retry_after)
            # On probation the next failure locks, so one attempt at a time.
            budget = 1 if record.lock_number else policy.max_failures - record.failures
            if len(record.reservations) >= budget:
                soonest = min(record.reservations.values(), default=now + 1)
                return Reservation(False, False, max(1, math.ceil(soonest - now)))
            record.reservations[token] = now + ttl
            self._save_lock(skey, record, now)
            return Reservation(True, False, 0)

    def lockout_release(self, key: str, token: str) -> None:
        with self._lock:
            now = self.clock()
            skey, record = self._lock_record(key, now)
            if record.reservations.pop(token, None) is not None:
                self._save_lock(skey, record, now)

    def lockout_reset(self, key: str) -> None:
        with self._lock:
            self._drop(self.storage_key(key, "lock"))

    # -- fixed-window throttle ----------------------------------------------

    def throttle_status(self, key: str) -> ThrottleCount:
        with self._lock:
            now = self.clock()
            entry = self._entries.get(self.storage_key(key, "throttle"))
            if entry is None or entry.expires_at <= now:
                return ThrottleCount(0, 0.0)
            assert isinstance(entry.value, int)
            return ThrottleCount(entry.value, entry.expires_at - now)

    def throttle_hit(self, key: str, window_seconds: float) -> ThrottleCount:
        with self._lock:
            now = self.clock()
            skey = self.storage_key(key, "throttle")
            count = self._get(skey, now)
            entry = self._entries.get(skey)
            if not isinstance(count, int) or entry is None:
                count, expires_at = 0, now + window_seconds
            else:
                expires_at = entry.expires_at
            self._put(skey, count + 1, expires_at, False, now)
            return ThrottleCount(count + 1, expires_at - now)

    def throttle_reset(self, key: str) -> None:
        with self._lock:
            self._drop(self.storage_key(key, "throttle"))

    # -- sliding-window rate limit ------------------------------------------

    def rate_limit_hit_many(
        self, keys: Sequence[str], limits: Sequence[Limit]
    ) -> RateLimitResult:
        every = [limit for _key in keys for limit in limits]
        with self._lock:
            now = self.clock()
            windows = []
            for key, limit in ((k, lim) for k in keys for lim in limits):
                skey = self.storage_key(key, f"rl:{limit.count}/{limit.period_seconds}")
                period = limit.period_seconds
                index = math.floor(now / period)
                stored = self._get(skey, now)
                current = previous = 0
                if isinstance(stored, tuple):
                    stored_index, stored_current, stored_previous = stored
                    if stored_index == index:
                        current, previous = stored_current, stored_previous
                    elif stored_index == index - 1:
                        previous = stored_current
                elapsed = now - index * period
                decision = sliding_window_decision(limit, current, previous, elapsed)
                windows.append((skey, index, current, previous, decision))
            result = combine(every, [w[4] for w in windows])
            if result.allowed:
                for (skey, index, current, previous, _), limit in zip(
                    windows, every, strict=True
                ):
                    expires_at = (index + 2) * limit.period_seconds
                    self._put(
                        skey, (index, current + 1, previous), expires_at, False, now
                    )
            return result

    def rate_limit_reset(self, key: str | None = None) -> None:
        with self._lock:
            if key is None:
                marker = "}:rl:"
                doomed = [k for k in self._entries if marker in k]
            else:
                head = self.storage_key(key, "rl:")
                doomed = [k for k in self._entries if k.startswith(head)]
            for skey in doomed:
                self._drop(skey)

    def token_put(self, token_hash: str, subject: str, ttl: float) -> None:
        with self._lock:
            now = self.clock()
            skey = self.storage_key(token_hash, "token")
            # A pending token must not be evicted before its TTL: protected.
            self._put(skey, subject, now + ttl, True, now)

    def token_take(self, token_hash: str) -> str | None:
        with self._lock:
            now = self.clock()
            skey = self.storage_key(token_hash, "token")
            subject = self._get(skey, now)
            self._drop(skey)
            return subject if isinstance(subject, str) else None

    def lockout_keys(self) -> Iterator[str]:
        with self._lock:
            found = [k for k in self._entries if k.endswith("}:lock")]
        for skey in found:
            yield self.identifier_of(skey)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._plain.clear()
            self._expiry_heap.clear()

    def ping(self) -> None:
        return None


def _count_failure(record: _LockRecord, policy: LockoutConfig, now: float) -> None:
    record.last_failure = now
    if record.lock_number:
        record.lock_number += 1
        record.locked_until = now + policy.lock_seconds(record.lock_number)
    else:
        if record.failures == 0:
            record.window_start = now
        record.failures += 1
        if record.failures >= policy.max_failures:
            record.failures = 0
            record.lock_number = 1
            record.locked_until = now + policy.lock_seconds(1)
    if record.lock_number:
        record.state_expires = max(
            record.last_failure + policy.reset_after_seconds, record.locked_until
        )
    else:
        record.state_expires = record.window_start + policy.window_seconds
