"""What a storage outage means: a store that wraps the shared one.

``FallbackStorage`` sends every decision to the primary store (Redis) until
a call fails. Then a breaker opens: for ``retry_seconds`` this process does
not call the primary at all, so a frozen server costs one socket timeout
per interval, not one per request; afterwards one call probes it with a
real decision (:meth:`Storage.probe`). Meanwhile each decision is answered
by the mode:

- ``"memory"``: by this process's own bounded memory store, with the same
  policy. A lock set there keeps refusing until it ends, also after the
  primary is back.
- ``"open"``: allowed, unguarded.
- ``"closed"``: refused with :class:`~flask_lockout.StorageOutage` (503).

Tokens never fall back: a token stored in one process's memory could not be
redeemed in another, so they fail closed in every mode.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..errors import StorageError, StorageOutage
from ..limits import Limit, RateLimitResult
from ..policy import LockoutConfig, LockState, Reservation, whole_seconds
from ..surge import SurgeRules, SurgeState
from .base import (
    AttemptAnswer,
    AttemptAsk,
    AttemptKey,
    FullStorage,
    Settlement,
    Storage,
    ThrottleCount,
)
from .memory import MemoryStorage

#: Called with the error when the primary is lost, with None when it is back.
OnChange = Callable[[StorageError | None], None]


class FallbackStorage(Storage):
    """The primary store, with a breaker and a fallback mode; see the module.

    ``Lockout`` wraps Redis storage in one of these by itself, from
    ``LOCKOUT_FAIL_MODE`` and ``LOCKOUT_STORAGE_RETRY_SECONDS``.

    >>> from flask_lockout import LoginLockout, storage_from_uri
    >>> dead = storage_from_uri("redis://127.0.0.1:1/0")
    >>> storage = FallbackStorage(dead, mode="memory", retry_seconds=5)
    >>> lockout = LoginLockout(storage=storage)
    >>> [lockout.record_failure("login:alice") for _ in range(5)][-1]
    (True, 60)
    >>> storage.degraded
    True
    """

    def __init__(
        self,
        primary: FullStorage,
        *,
        mode: str = "memory",
        retry_seconds: float = 5.0,
        memory: MemoryStorage | None = None,
        on_change: OnChange | None = None,
        on_error: Callable[[StorageError], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if mode not in ("memory", "open", "closed"):
            raise ValueError(
                f"mode must be 'memory', 'open' or 'closed', not {mode!r}."
            )
        self.primary = primary
        self.prefix = primary.prefix
        self.mode = mode
        self.retry_seconds = retry_seconds
        self.memory = memory if memory is not None else MemoryStorage(clock=clock)
        self.on_change = on_change
        #: Called with every failed call (each probe too), for metrics.
        self.on_error = on_error
        self.clock = clock
        self._lock = threading.Lock()
        self._retry_at = 0.0
        #: The error that opened the breaker; None while the primary answers.
        self.lost: StorageError | None = None

    @property
    def degraded(self) -> bool:
        """True while this process decides without the primary store."""
        return self.lost is not None

    def _primary_up(self) -> bool:
        """True while the primary answers; once the retry interval is over,
        one caller probes it with a real decision (a ping answers while
        Redis refuses scripts), the others keep skipping."""
        if self.lost is None:
            return True
        with self._lock:
            now = self.clock()
            if now < self._retry_at:
                return False
            self._retry_at = now + self.retry_seconds
        try:
            self.primary.probe()
        except StorageError as exc:
            self._lose(exc)
            return False
        self._recover()
        return True

    def _call(self, method: str, *args: Any) -> Any:
        """The primary's answer, or ``_SKIPPED`` while it is away."""
        if not self._primary_up():
            return _SKIPPED
        try:
            return getattr(self.primary, method)(*args)
        except StorageError as exc:
            self._lose(exc)
            return _SKIPPED

    def _lose(self, error: StorageError) -> None:
        with self._lock:
            self._retry_at = self.clock() + self.retry_seconds
            first = self.lost is None
            self.lost = error
        if self.on_error is not None:
            self.on_error(error)
        if first and self.on_change is not None:
            self.on_change(error)

    def _recover(self) -> None:
        with self._lock:
            was_lost, self.lost = self.lost is not None, None
        if was_lost and self.on_change is not None:
            self.on_change(None)

    def _outage(self) -> StorageOutage:
        return StorageOutage(self.retry_seconds)

    def _decide(
        self, method: str, args: tuple[Any, ...], open_answer: Callable[[], Any]
    ) -> Any:
        """The primary's decision; while it is away, this process's memory
        store's, ``open_answer()`` or a 503, as the mode says."""
        found = self._call(method, *args)
        if found is not _SKIPPED:
            return found
        if self.mode == "memory":
            return getattr(self.memory, method)(*args)
        if self.mode == "open":
            return open_answer()
        raise self._outage()

    def _read(self, method: str, *args: Any) -> Any:
        """A read: the primary's answer, else this process's (503 if closed)."""
        found = self._call(method, *args)
        if found is not _SKIPPED:
            return found
        if self.mode == "closed":
            raise self._outage()
        return getattr(self.memory, method)(*args)

    # -- login lockout ------------------------------------------------------

    def _outage_locks(
        self, attempts: Sequence[AttemptKey], policy: LockoutConfig
    ) -> list[Reservation] | None:
        """Locks set while the primary was away keep refusing after it.
        (While it is away, the memory store decides and knows them anyway.)"""
        if not len(self.memory) or not self._primary_up():
            return None
        known = [
            self.memory.lockout_status(a.key, a.policy or policy) for a in attempts
        ]
        if not any(state.locked for state in known):
            return None
        return [Reservation(False, s.locked, s.retry_after) for s in known]

    def lockout_attempt(self, ask: AttemptAsk) -> AttemptAnswer:
        refused = self._outage_locks(ask.attempts, ask.policy)
        if refused is not None:
            return AttemptAnswer(None, refused, None)
        return self._decide(  # type: ignore[no-any-return]
            "lockout_attempt",
            (ask,),
            lambda: AttemptAnswer(
                _unlimited(ask.limits) if ask.limit_keys else None,
                [Reservation(True, False, 0)] * len(ask.attempts),
                None,
            ),
        )

    def lockout_reserve_all(
        self,
        attempts: Sequence[AttemptKey],
        policy: LockoutConfig,
        token: str,
        ttl: float,
    ) -> list[Reservation]:
        refused = self._outage_locks(attempts, policy)
        if refused is not None:
            return refused
        return self._decide(  # type: ignore[no-any-return]
            "lockout_reserve_all",
            (attempts, policy, token, ttl),
            lambda: [Reservation(True, False, 0)] * len(attempts),
        )

    def lockout_settle_all(
        self,
        settlements: Sequence[Settlement],
        policy: LockoutConfig,
        token: str,
        surge: tuple[str, SurgeRules, bool] | None = None,
    ) -> None:
        if self.mode == "memory" and len(self.memory):
            self.memory.lockout_settle_all(settlements, policy, token, surge)
        self._call("lockout_settle_all", settlements, policy, token, surge)

    def lockout_failure(self, key: str, policy: LockoutConfig) -> LockState:
        return self._decide(  # type: ignore[no-any-return]
            "lockout_failure", (key, policy), lambda: LockState(False, 0)
        )

    def lockout_status(self, key: str, policy: LockoutConfig) -> LockState:
        local = self.memory.lockout_status(key, policy)
        if local.locked:
            return local
        return self._read("lockout_status", key, policy)  # type: ignore[no-any-return]

    def lockout_reset(self, key: str) -> None:
        self.memory.lockout_reset(key)
        self.primary.lockout_reset(key)

    def lockout_unlock(self, key: str, policy: LockoutConfig) -> None:
        self.memory.lockout_unlock(key, policy)
        self.primary.lockout_unlock(key, policy)

    def lockout_keys(self) -> Iterator[str]:
        return _both(self.primary.lockout_keys(), self.memory.lockout_keys())

    # -- rate limits and throttles ------------------------------------------

    def rate_limit_hit_many(
        self,
        keys: Sequence[str],
        limits: Sequence[Limit],
        reported: int | None = None,
    ) -> RateLimitResult:
        return self._decide(  # type: ignore[no-any-return]
            "rate_limit_hit_many",
            (keys, limits, reported),
            lambda: _unlimited(limits),
        )

    def rate_limit_reset(self, key: str | None = None) -> None:
        self.memory.rate_limit_reset(key)
        self.primary.rate_limit_reset(key)

    def throttle_status(self, key: str) -> ThrottleCount:
        return self._read("throttle_status", key)  # type: ignore[no-any-return]

    def throttle_hit(self, key: str, window_seconds: float) -> ThrottleCount:
        return self._decide(  # type: ignore[no-any-return]
            "throttle_hit", (key, window_seconds), lambda: ThrottleCount(0, 0.0)
        )

    def throttle_reset(self, key: str) -> None:
        self.memory.throttle_reset(key)
        self.primary.throttle_reset(key)

    # -- surge defence: each process counts on its own during an outage -------

    def surge_check(self, scope: str, rules: SurgeRules, exempt: bool) -> SurgeState:
        return self._read("surge_check", scope, rules, exempt)  # type: ignore[no-any-return]

    def surge_count(
        self, scope: str, rules: SurgeRules, new_device: bool
    ) -> SurgeState:
        return self._read("surge_count", scope, rules, new_device)  # type: ignore[no-any-return]

    def surge_succeeded(self, scope: str, rules: SurgeRules, new_device: bool) -> None:
        self._read("surge_succeeded", scope, rules, new_device)

    def surge_status(self, scope: str, rules: SurgeRules) -> SurgeState:
        return self._read("surge_status", scope, rules)  # type: ignore[no-any-return]

    def surge_start(self, scope: str, rules: SurgeRules, seconds: float) -> SurgeState:
        self.memory.surge_start(scope, rules, seconds)
        return self.primary.surge_start(scope, rules, seconds)

    def surge_end(self, scope: str, rules: SurgeRules) -> SurgeState:
        self.memory.surge_end(scope, rules)
        return self.primary.surge_end(scope, rules)

    def surge_scopes(self) -> Iterator[str]:
        return _both(self.primary.surge_scopes(), self.memory.surge_scopes())

    # -- tokens fail closed; administration goes to the primary ------------

    def token_put(self, token_hash: str, subject: str, ttl: float) -> None:
        try:
            self.primary.token_put(token_hash, subject, ttl)
        except StorageError as exc:
            raise self._outage() from exc

    def token_take(self, token_hash: str) -> str | None:
        try:
            return self.primary.token_take(token_hash)
        except StorageError as exc:
            raise self._outage() from exc

    def clear(self) -> None:
        self.memory.clear()
        self.primary.clear()

    def ping(self) -> None:
        self.primary.ping()

    def probe(self) -> None:
        self.primary.probe()

    def storage_key(self, identifier: str, kind: str) -> str:
        return self.primary.storage_key(identifier, kind)

    def describe(self, deep: bool = False) -> dict[str, object]:
        return {
            **self.primary.describe(deep),
            "fail_mode": self.mode,
            "fallback_active": self.degraded,
            "retry_in": whole_seconds(self._retry_at - self.clock())
            if self.degraded
            else 0,
        }


_SKIPPED: Any = object()


def _both(primary: Iterator[str], memory: Iterator[str]) -> Iterator[str]:
    """The primary's names, then those only this process's memory knows."""
    seen = set()
    for name in primary:
        seen.add(name)
        yield name
    for name in memory:
        if name not in seen:
            yield name


def _unlimited(limits: Sequence[Limit]) -> RateLimitResult:
    """The answer of LOCKOUT_FAIL_MODE="open": allowed, the whole limit left."""
    return RateLimitResult(True, limits[0].count, 0.0, limits[0].count)
