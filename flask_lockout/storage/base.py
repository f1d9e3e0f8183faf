"""What a store can do, one Protocol per capability, and the key layout.

Nothing here knows about HTTP or Flask. Every method of a bundled store is
atomic and raises :class:`~flask_lockout.StorageError` (or its subclass
:class:`~flask_lockout.StorageUnavailable`) and nothing else on failure.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import NamedTuple, Protocol

from ..limits import Limit, RateLimitResult
from ..policy import LockoutConfig, LockState, Outcome, Receipt, Reservation
from ..surge import SurgeRules, SurgeState

#: Identifiers longer than this many UTF-8 bytes are hashed before they become
#: part of a storage key, so hostile input cannot grow keys without bound.
MAX_KEY_PART_BYTES = 200


class ThrottleCount(NamedTuple):
    """A fixed-window failure counter and the seconds left in its window."""

    attempts: int
    ttl: float


class AttemptKey(NamedTuple):
    """One key an attempt is counted on, the spelling typed for it (empty
    for keys that no success forgives, such as ``ip``), and the key's own
    policy when it is not the call's (the keys of one call share the lock
    schedule: ``max_failures`` and the window may differ)."""

    key: str
    spelling: str = ""
    policy: LockoutConfig | None = None


class Settlement(NamedTuple):
    """How a reserved attempt ends on one key, with its reservation's
    receipt."""

    key: str
    outcome: Outcome
    spelling: str = ""
    receipt: Receipt = ""
    policy: LockoutConfig | None = None


class LockoutStorage(Protocol):
    """Login lockout: reserve attempts (each counted as a failure at once),
    settle them, and the administrative reads."""

    def lockout_reserve_all(
        self,
        attempts: Sequence[AttemptKey],
        policy: LockoutConfig,
        token: str,
        ttl: float,
    ) -> list[Reservation]:
        """Reserve one attempt on each key, counted as a failure, in one
        round trip; a locked key refuses (and counts nothing)."""

    def lockout_settle_all(
        self,
        settlements: Sequence[Settlement],
        policy: LockoutConfig,
        token: str,
        surge: tuple[str, SurgeRules, bool] | None = None,
    ) -> None:
        """End reservation ``token``; ``FAILURE`` needs no call at all. With
        ``surge`` (a scope, its rules and whether the device had no cookie),
        a success's failure is given back to the scope's surge count in the
        same round trip."""

    def lockout_failure(self, key: str, policy: LockoutConfig) -> LockState:
        """Count a failure with no reservation (a locked key changes nothing)."""

    def lockout_status(self, key: str, policy: LockoutConfig) -> LockState:
        """Peek at ``key`` without changing anything."""

    def lockout_reset(self, key: str) -> None:
        """Forget ``key`` entirely: failures, locks and pending attempts."""

    def lockout_unlock(self, key: str, policy: LockoutConfig) -> None:
        """End ``key``'s current lock, keeping its probation: the next
        failure locks it again, for longer."""

    def lockout_keys(self) -> Iterator[str]:
        """Yield every lockout key with state (hashed ones as their hash)."""


class RateLimitStorage(Protocol):
    """Sliding-window rate limits."""

    def rate_limit_hit_many(
        self,
        keys: Sequence[str],
        limits: Sequence[Limit],
        reported: int | None = None,
    ) -> RateLimitResult:
        """Count one hit on every key against all ``limits`` if every key and
        limit allows it; the result is the refusal, or the tightest of the
        first ``reported`` keys (all when None; limit 0 when none): the
        client's own allowance, as the ``RateLimit-*`` headers show it."""

    def rate_limit_reset(self, key: str | None = None) -> None:
        """Clear ``key``'s windows, or every rate-limit window when None."""


class ThrottleStorage(Protocol):
    """Fixed-window failure counters."""

    def throttle_status(self, key: str) -> ThrottleCount:
        """Peek at a failure counter."""

    def throttle_hit(self, key: str, window_seconds: float) -> ThrottleCount:
        """Add one failure; the first one starts the window and its TTL."""

    def throttle_reset(self, key: str) -> None:
        """Delete a failure counter."""


class SurgeAsk(NamedTuple):
    """What one attempt asks of its scope's surge record (DESIGN §3.1)."""

    scope: str
    rules: SurgeRules
    #: A device with a valid cookie for the account: counted, never limited.
    known_device: bool
    #: The attempt passed the app's step-up challenge: no surge limit.
    challenge_passed: bool
    #: The attempt's surge windows, its address's then its network's (None
    #: when the asking process knows of no surge: the allowance alone).
    address_key: str | None = None
    address_limits: Sequence[Limit] = ()
    network_key: str | None = None
    network_limits: Sequence[Limit] = ()

    @property
    def exempt(self) -> bool:
        return self.known_device or self.challenge_passed


class AttemptAsk(NamedTuple):
    """One guarded attempt, as ``lockout_attempt`` decides it: the keys to
    reserve it on (``policy`` for those without one of their own), its
    reservation ``token`` and how long that lives (``ttl``, seconds), the
    stacked rate limit (none when ``limit_keys`` is empty; ``reported`` as
    for ``rate_limit_hit_many``), and what it asks of the scope's surge
    record."""

    attempts: Sequence[AttemptKey]
    policy: LockoutConfig
    token: str
    ttl: float
    limit_keys: Sequence[str] = ()
    limits: Sequence[Limit] = ()
    reported: int | None = None
    surge: SurgeAsk | None = None


class AttemptAnswer(NamedTuple):
    """A guarded attempt's decision: the stacked rate limit's answer (None
    without one), the reservations (empty when something refused first),
    and the scope's surge (None without surge counting)."""

    rate_limit: RateLimitResult | None
    reservations: list[Reservation]
    surge: SurgeState | None


class SurgeStorage(Protocol):
    """One surge record per scope (:mod:`flask_lockout.surge`)."""

    def surge_check(self, scope: str, rules: SurgeRules, exempt: bool) -> SurgeState:
        """Before a reservation: a surge's state, and the allowance's answer
        for an attempt that is not ``exempt``."""

    def surge_count(
        self, scope: str, rules: SurgeRules, new_device: bool
    ) -> SurgeState:
        """After a granted reservation: one more failure."""

    def surge_succeeded(self, scope: str, rules: SurgeRules, new_device: bool) -> None:
        """A success gives its reservation's failure back; one from a device
        without a cookie teaches the allowance."""

    def surge_status(self, scope: str, rules: SurgeRules) -> SurgeState:
        """Peek at the scope's surge."""

    def surge_start(self, scope: str, rules: SurgeRules, seconds: float) -> SurgeState:
        """An operator's surge for ``seconds``."""

    def surge_end(self, scope: str, rules: SurgeRules) -> SurgeState:
        """End the scope's surge now."""

    def surge_scopes(self) -> Iterator[str]:
        """Every scope with a surge record."""


class TokenStorage(Protocol):
    """Single-use tokens, stored by hash."""

    def token_put(self, token_hash: str, subject: str, ttl: float) -> None:
        """Store ``subject`` under ``token_hash`` for ``ttl`` seconds."""

    def token_take(self, token_hash: str) -> str | None:
        """Return and delete the subject, atomically: one taker wins."""


def key_part(identifier: str) -> str:
    """Return ``identifier`` as it may appear inside a storage key.

    Long identifiers and those containing ``{`` or ``}`` (which would break the
    Redis Cluster hash tag) are replaced by their SHA-256.
    """
    if (
        "{" in identifier
        or "}" in identifier
        or len(identifier) * 4 > MAX_KEY_PART_BYTES
    ):
        # At most 4 UTF-8 bytes a character: only then is the length in doubt.
        raw = identifier.encode("utf-8", "surrogatepass")
        if len(raw) > MAX_KEY_PART_BYTES or b"{" in raw or b"}" in raw:
            return "sha256:" + hashlib.sha256(raw).hexdigest()
    return identifier


class Storage:
    """The base of every bundled store: its key layout and administration.

    A store implements the capability protocols above
    (:class:`LockoutStorage`, :class:`RateLimitStorage`,
    :class:`ThrottleStorage`, :class:`TokenStorage`); the bundled ones
    implement all four.

    >>> from flask_lockout import MemoryStorage
    >>> MemoryStorage().storage_key("login:ip:203.0.113.7", "lock")
    'lockout:{login:ip:203.0.113.7}:lock'
    """

    #: Prefix of every storage key, so one Redis can serve several apps.
    prefix: str = "lockout"

    def storage_key(self, identifier: str, kind: str) -> str:
        """The key for ``identifier``: ``<prefix>:{<identifier>}:<kind>``.

        The braces are a Redis Cluster hash tag: every key of one decision
        lands in one slot.
        """
        return f"{self.prefix}:{{{key_part(identifier)}}}:{kind}"

    def identifier_of(self, storage_key: str) -> str:
        """The identifier inside ``<prefix>:{<identifier>}:<kind>``."""
        return storage_key[len(self.prefix) + 2 : storage_key.rindex("}")]

    def clear(self) -> None:
        """Delete every key under this store's prefix."""
        raise NotImplementedError

    def ping(self) -> None:
        """Raise :class:`~flask_lockout.StorageError` unless storage answers."""
        raise NotImplementedError

    def probe(self) -> None:
        """Raise :class:`~flask_lockout.StorageError` unless storage would
        decide now: what a breaker asks before it trusts a store again. A
        store whose decisions can fail while it still answers (Redis refusing
        scripts) probes with a real decision; this default pings."""
        self.ping()

    def describe(self, deep: bool = False) -> dict[str, object]:
        """What ``flask lockout check`` and the dashboard show of this store."""
        return {"backend": type(self).__name__}


class FullStorage(
    LockoutStorage,
    RateLimitStorage,
    ThrottleStorage,
    TokenStorage,
    SurgeStorage,
    Protocol,
):
    """Everything the Flask extension asks of its store."""

    prefix: str

    def lockout_attempt(self, ask: AttemptAsk) -> AttemptAnswer:
        """A guarded attempt in one round trip: the stacked rate limit, the
        surge's limits, the reservations, and the surge's count. What
        refuses first ends it: nothing after it is counted."""

    def storage_key(self, identifier: str, kind: str) -> str: ...

    def clear(self) -> None: ...

    def ping(self) -> None: ...

    def probe(self) -> None: ...

    def describe(self, deep: bool = False) -> dict[str, object]: ...


def attempt_in_steps(store: FullStorage, ask: AttemptAsk) -> AttemptAnswer:
    """``lockout_attempt`` for a store that decides each part on its own
    (memory, Redis Cluster): the same steps, in the same order."""
    result = None
    surge = ask.surge
    if ask.limit_keys:
        result = store.rate_limit_hit_many(ask.limit_keys, ask.limits, ask.reported)
        if not result.allowed:
            return AttemptAnswer(result, [], None)
    state = None
    if surge is not None:
        state = store.surge_check(surge.scope, surge.rules, surge.exempt)
        if state.refused:
            return AttemptAnswer(result, [], state)
        if state.active and not surge.exempt:
            for key, key_limits in (
                (surge.address_key, surge.address_limits),
                (surge.network_key, surge.network_limits),
            ):
                if key is None:
                    continue
                window = store.rate_limit_hit_many([key], key_limits)
                if not window.allowed:
                    # Not counted toward keeping the surge on: one address
                    # refused again and again must not hold it.
                    refused = state._replace(
                        refused=True, retry_after=window.retry_after
                    )
                    return AttemptAnswer(result, [], refused)
    reservations = store.lockout_reserve_all(
        ask.attempts, ask.policy, ask.token, ask.ttl
    )
    if surge is not None and all(r.granted for r in reservations):
        counted = store.surge_count(surge.scope, surge.rules, not surge.known_device)
        if state is not None and not counted.event:
            counted = counted._replace(event=state.event)
        state = counted
    return AttemptAnswer(result, reservations, state)
