"""In-process storage: thread-safe, bounded, driven by an injectable clock."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence

from ..errors import StorageError
from ..limits import Limit, RateLimitResult, combine, sliding_window_decision
from ..policy import (
    LockoutConfig,
    LockRecord,
    LockState,
    Outcome,
    Pending,
    Reservation,
)
from .base import AttemptKey, Settlement, Storage, ThrottleCount

logger = logging.getLogger("flask_lockout")

#: Default bound on the number of keys the memory store holds.
DEFAULT_MAX_KEYS = 100_000

#: The identifier of the shared bucket that new keys use once protected
#: state fills the store.
OVERFLOW = "~overflow"


class _Counter:
    """A throttle counter, a token or a rate-limit window, with its expiry."""

    __slots__ = ("value", "expires_at")

    def __init__(self, value: object, expires_at: float) -> None:
        self.value = value
        self.expires_at = expires_at


#: Attempts in flight that can still be given back, at most. They are kept
#: apart from the records, so a tracked key costs nothing for them; past the
#: bound the oldest is forgotten, and that attempt simply stays counted.
MAX_PENDING = 10_000

#: A full store sweeps out expired keys at most this often (in its clock's
#: seconds): a sweep reads every key, so it must not run on every request.
SWEEP_INTERVAL = 1.0

_Stored = LockRecord | _Counter


class MemoryStorage(Storage):
    """Storage in this process's memory; the default (``memory://``).

    :param clock: returns seconds; defaults to :func:`time.monotonic`. Tests
        pass a clock they can step.
    :param max_keys: the most keys held. Past it, expired keys go first, then
        the least recently used rate-limit windows and throttle counters.
        Lockout state (failures, locks, probation) and
        tokens are never evicted: when they fill the store, new keys share
        one overflow bucket per kind, which locks them together quickly
        rather than leaving them unguarded, and the store logs it once.

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
        self._entries: dict[str, _Stored] = {}
        #: Rate-limit windows and throttle counters, least recently used first:
        #: the only keys evicted while they live.
        self._plain: OrderedDict[str, None] = OrderedDict()
        self._next_sweep = -math.inf
        #: (storage key, token) -> (expires, what giving the attempt back needs)
        self._pending: OrderedDict[tuple[str, str], tuple[float, Pending]] = (
            OrderedDict()
        )
        #: True once new keys had to share the overflow bucket.
        self.overflowed = False

    def __len__(self) -> int:
        return len(self._entries)

    # -- bounded key space --------------------------------------------------

    def _get(self, key: str, now: float) -> _Stored | None:
        stored = self._entries.get(key)
        if stored is None:
            return None
        if stored.expires_at <= now:
            self._drop(key)
            return None
        if key in self._plain:
            self._plain.move_to_end(key)
        return stored

    def _slot(self, skey: str, kind: str, now: float) -> str:
        """``skey`` if it exists or room can be made for it, else the shared
        overflow key of its kind."""
        if skey in self._entries or self._make_room(now):
            return skey
        if not self.overflowed:
            self.overflowed = True
            logger.warning(
                "The memory store is full of protected state (%d keys): new keys"
                " now share one overflow bucket and lock together. Raise"
                " LOCKOUT_MEMORY_MAX_KEYS or use Redis.",
                self.max_keys,
            )
        return self.storage_key(OVERFLOW, kind)

    def _make_room(self, now: float) -> bool:
        if len(self._entries) < self.max_keys:
            return True
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_INTERVAL
            for key in [k for k, v in self._entries.items() if v.expires_at <= now]:
                self._drop(key)
        while len(self._entries) >= self.max_keys and self._plain:
            # The least recently used counter or window.
            self._entries.pop(self._plain.popitem(last=False)[0], None)
        return len(self._entries) < self.max_keys

    def _put(self, key: str, stored: _Stored, plain: bool, now: float) -> None:
        if stored.expires_at <= now:
            self._drop(key)
            return
        self._entries[key] = stored
        if plain:
            self._plain[key] = None
            self._plain.move_to_end(key)
        else:
            self._plain.pop(key, None)

    def _drop(self, key: str) -> None:
        self._entries.pop(key, None)
        self._plain.pop(key, None)

    # -- login lockout ------------------------------------------------------

    def _record(
        self, key: str, policy: LockoutConfig, now: float
    ) -> tuple[str, LockRecord]:
        skey = self._slot(self.storage_key(key, "lock"), "lock", now)
        record = self._get(skey, now)
        if not isinstance(record, LockRecord):
            record = LockRecord()
        record.refresh(policy, now)
        return skey, record

    def _save(
        self, skey: str, record: LockRecord, policy: LockoutConfig, now: float
    ) -> None:
        record.expires_at = record.lasts_until(policy) if record.protected() else now
        self._put(skey, record, False, now)

    def lockout_reserve_all(
        self,
        attempts: Sequence[AttemptKey],
        policy: LockoutConfig,
        token: str,
        ttl: float,
    ) -> list[Reservation]:
        answers = []
        with self._lock:
            now = self.clock()
            for key, spelling in attempts:
                skey, record = self._record(key, policy, now)
                answer, pending = record.reserve(policy, now, spelling)
                answers.append(answer)
                if pending is not None:
                    if len(self._pending) >= MAX_PENDING:
                        self._pending.popitem(last=False)
                    self._pending[skey, token] = (now + ttl, pending)
                self._save(skey, record, policy, now)
        return answers

    def lockout_guard(
        self,
        limit_keys: Sequence[str],
        limits: Sequence[Limit],
        attempts: Sequence[AttemptKey],
        policy: LockoutConfig,
        token: str,
        ttl: float,
    ) -> tuple[RateLimitResult, list[Reservation]]:
        result = self.rate_limit_hit_many(limit_keys, limits)
        if not result.allowed:
            return result, []
        return result, self.lockout_reserve_all(attempts, policy, token, ttl)

    def lockout_settle_all(
        self, settlements: Sequence[Settlement], policy: LockoutConfig, token: str
    ) -> None:
        with self._lock:
            now = self.clock()
            for key, outcome, spelling in settlements:
                if outcome is Outcome.FAILURE:
                    continue
                if outcome is Outcome.CLEAR:
                    self._drop(self.storage_key(key, "lock"))
                    continue
                skey, record = self._record(key, policy, now)
                found = self._pending.pop((skey, token), None)
                pending = found[1] if found is not None and found[0] > now else None
                if outcome is Outcome.SUCCESS:
                    record.succeed(pending, spelling, now)
                elif outcome is Outcome.UNKNOWN:
                    record.release(pending, now, policy)
                else:
                    record.release(pending, now)
                self._save(skey, record, policy, now)

    def lockout_failure(self, key: str, policy: LockoutConfig) -> LockState:
        with self._lock:
            now = self.clock()
            skey, record = self._record(key, policy, now)
            record.count_failure(policy, now, "")
            self._save(skey, record, policy, now)
            return record.state(now)

    def lockout_status(self, key: str, policy: LockoutConfig) -> LockState:
        with self._lock:
            now = self.clock()
            record = self._entries.get(self.storage_key(key, "lock"))
            if record is None and self.overflowed:
                record = self._entries.get(self.storage_key(OVERFLOW, "lock"))
            if not isinstance(record, LockRecord) or record.expires_at <= now:
                return LockState(False, 0)
            if now >= record.state_expires(policy):
                return LockState(False, 0)
            return record.state(now)

    def lockout_reset(self, key: str) -> None:
        with self._lock:
            self._drop(self.storage_key(key, "lock"))

    def lockout_unlock(self, key: str, policy: LockoutConfig) -> None:
        with self._lock:
            now = self.clock()
            skey, record = self._record(key, policy, now)
            record.unlock(now)
            self._save(skey, record, policy, now)

    def lockout_keys(self) -> Iterator[str]:
        with self._lock:
            found = [k for k in self._entries if k.endswith("}:lock")]
        for skey in found:
            yield self.identifier_of(skey)

    # -- fixed-window throttle ----------------------------------------------

    def throttle_status(self, key: str) -> ThrottleCount:
        with self._lock:
            now = self.clock()
            counter = self._entries.get(self.storage_key(key, "throttle"))
            if not isinstance(counter, _Counter) or counter.expires_at <= now:
                return ThrottleCount(0, 0.0)
            assert isinstance(counter.value, int)
            return ThrottleCount(counter.value, counter.expires_at - now)

    def throttle_hit(self, key: str, window_seconds: float) -> ThrottleCount:
        with self._lock:
            now = self.clock()
            skey = self._slot(self.storage_key(key, "throttle"), "throttle", now)
            counter = self._get(skey, now)
            count = counter.value if isinstance(counter, _Counter) else None
            if not isinstance(counter, _Counter) or not isinstance(count, int):
                counter, count = _Counter(0, now + window_seconds), 0
            counter.value = count + 1
            self._put(skey, counter, True, now)
            return ThrottleCount(count + 1, counter.expires_at - now)

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
                kind = f"rl:{limit.count}/{limit.period_seconds}"
                skey = self._slot(self.storage_key(key, kind), kind, now)
                period = limit.period_seconds
                index = math.floor(now / period)
                stored = self._get(skey, now)
                current = previous = 0
                if isinstance(stored, _Counter) and isinstance(stored.value, tuple):
                    stored_index, stored_current, stored_previous = stored.value
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
                    window = _Counter((index, current + 1, previous), expires_at)
                    self._put(skey, window, True, now)
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

    # -- single-use tokens --------------------------------------------------

    def token_put(self, token_hash: str, subject: str, ttl: float) -> None:
        with self._lock:
            now = self.clock()
            skey = self.storage_key(token_hash, "token")
            if skey not in self._entries and not self._make_room(now):
                raise StorageError("The memory store is full: no room for a token.")
            # A pending token must not be evicted before its TTL: protected.
            self._put(skey, _Counter(subject, now + ttl), False, now)

    def token_take(self, token_hash: str) -> str | None:
        with self._lock:
            now = self.clock()
            skey = self.storage_key(token_hash, "token")
            token = self._get(skey, now)
            self._drop(skey)
            if isinstance(token, _Counter) and isinstance(token.value, str):
                return token.value
            return None

    # -- administration -----------------------------------------------------

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._plain.clear()
            self._pending.clear()
            self.overflowed = False

    def ping(self) -> None:
        return None

    def describe(self, deep: bool = False) -> dict[str, object]:
        return {
            "backend": "memory (this process only)",
            "keys": len(self._entries),
            "max_keys": self.max_keys,
            "overflowed": self.overflowed,
        }
