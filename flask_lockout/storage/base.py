"""Storage contracts: the Protocols users may implement and the bundled ABC.

Nothing here knows about HTTP or Flask. Times are seconds; results carry whole
seconds where a client will see them.
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ..limits import Limit
    from ..lockout import LockoutConfig

#: Identifiers longer than this many UTF-8 bytes are hashed before they become
#: part of a storage key, so hostile input cannot grow keys without bound.
MAX_KEY_PART_BYTES = 200


class LockState(NamedTuple):
    """What storage knows about one lockout key."""

    locked: bool
    retry_after: int
    failures: int = 0
    lock_number: int = 0


class Reservation(NamedTuple):
    """The answer to a request for one verification attempt.

    ``granted`` is false when the key is locked (``locked`` true) or when every
    attempt the policy still allows is already in flight.
    """

    granted: bool
    locked: bool
    retry_after: int


class _Verdict(NamedTuple):
    allowed: bool
    remaining: int
    retry_after: float


class RateLimitResult(_Verdict):
    """The answer to one rate-limited hit: ``(allowed, remaining, retry_after)``.

    >>> from flask_lockout import SlidingWindowStore
    >>> allowed, remaining, retry_after = SlidingWindowStore().hit("k", "2/minute")
    >>> allowed, remaining, retry_after
    (True, 1, 0.0)

    ``retry_after`` is in seconds (0 when allowed). Beyond the tuple, ``limit``
    is the count of the deciding limit, ``reset_after`` how long until it has
    its full budget back, and ``window`` the position of the deciding window
    among keys x limits (key-major).
    """

    limit: int
    reset_after: float
    window: int

    def __new__(
        cls,
        allowed: bool,
        remaining: int,
        retry_after: float,
        limit: int = 0,
        reset_after: float = 0.0,
        window: int = 0,
    ) -> RateLimitResult:
        result = super().__new__(cls, allowed, remaining, retry_after)
        result.limit = limit
        result.reset_after = reset_after
        result.window = window
        return result

    def __repr__(self) -> str:
        return (
            f"RateLimitResult(allowed={self.allowed}, remaining={self.remaining},"
            f" retry_after={self.retry_after}, limit={self.limit},"
            f" reset_after={self.reset_after}, window={self.window})"
        )


class ThrottleCount(NamedTuple):
    """A fixed-window failure counter and the seconds left in its window."""

    attempts: int
    ttl: float


@runtime_checkable
class LockoutBackend(Protocol):
    """A store that applies a lockout policy to keys.

    Implement this to plug a custom store into :class:`~flask_lockout.LoginLockout`.
    The bundled stores also reserve attempts atomically; a custom backend
    without ``reserve`` is checked with ``is_locked`` instead. ::

        class AuditedBackend:
            def is_locked(self, key): ...
            def record_failure(self, key): ...
            def record_success(self, key): ...

        lockout = LoginLockout(LockoutConfig(backend=AuditedBackend()))
    """

    def is_locked(self, key: str) -> tuple[bool, int]: ...

    def record_failure(self, key: str) -> tuple[bool, int]: ...

    def record_success(self, key: str) -> None: ...


@runtime_checkable
class ThrottleBackend(Protocol):
    """The Redis commands a fixed-window throttle needs.

    ``redis.Redis``, a flask-redis client and fakeredis match it as they are. ::

        throttle = AttemptThrottle(redis.Redis(), max_attempts=5, window_seconds=300)
    """

    def get(self, name: str) -> object: ...

    def incr(self, name: str, amount: int = 1) -> object: ...

    def expire(self, name: str, time: int) -> object: ...

    def ttl(self, name: str) -> object: ...

    def delete(self, *names: str) -> object: ...


class RateLimitStore(Protocol):
    """A store for sliding-window rate limits.

    ``hit`` counts one hit against every limit given, atomically: when any
    limit refuses, nothing is consumed. ``reset(None)`` clears the whole store.

    >>> from flask_lockout import SlidingWindowStore, parse_limits
    >>> store: RateLimitStore = SlidingWindowStore()
    >>> [store.hit("k", parse_limits("1/minute")).allowed for _ in range(2)]
    [True, False]
    """

    def hit(self, key: str, limit: Limit | Sequence[Limit]) -> RateLimitResult: ...

    def reset(self, key: str | None = None) -> None: ...


def key_part(identifier: str) -> str:
    """Return ``identifier`` as it may appear inside a storage key.

    Long identifiers and those containing ``{`` or ``}`` (which would break the
    Redis Cluster hash tag) are replaced by their SHA-256.
    """
    raw = identifier.encode("utf-8", "surrogatepass")
    if len(raw) > MAX_KEY_PART_BYTES or b"{" in raw or b"}" in raw:
        return "sha256:" + hashlib.sha256(raw).hexdigest()
    return identifier


class Storage(abc.ABC):
    """The operations every bundled store performs, each atomic.

    Engines call these; they are public so that a custom store can subclass
    this and pass the shared contract tests. Every method raises
    :class:`~flask_lockout.StorageError` (or its subclass
    :class:`~flask_lockout.StorageUnavailable`) and nothing else on failure.

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

    # -- login lockout ---------------------------------------------------

    @abc.abstractmethod
    def lockout_status(self, key: str, policy: LockoutConfig) -> LockState:
        """Peek at ``key`` without changing anything."""

    @abc.abstractmethod
    def lockout_failure(
        self, key: str, policy: LockoutConfig, token: str | None = None
    ) -> LockState:
        """Count a failure (releasing reservation ``token``, if any)."""

    @abc.abstractmethod
    def lockout_success(self, key: str, token: str | None = None) -> None:
        """Clear failures and locks (releasing reservation ``token``, if any)."""

    @abc.abstractmethod
    def lockout_reserve(
        self, key: str, policy: LockoutConfig, token: str, ttl: float
    ) -> Reservation:
        """Reserve one verification attempt, valid for ``ttl`` seconds."""

    @abc.abstractmethod
    def lockout_release(self, key: str, token: str) -> None:
        """Drop a reservation without counting anything."""

    def lockout_reserve_all(
        self, keys: Sequence[str], policy: LockoutConfig, token: str, ttl: float
    ) -> list[Reservation]:
        """Reserve one attempt on each key (each atomic on its own).

        Stores that can send several decisions in one round trip override this.
        """
        return [self.lockout_reserve(key, policy, token, ttl) for key in keys]

    def lockout_settle_all(
        self, outcomes: Sequence[tuple[str, str]], policy: LockoutConfig, token: str
    ) -> list[LockState]:
        """Settle reservation ``token`` on each ``(key, outcome)``; outcome is
        ``"failure"``, ``"success"`` or ``"release"``. Returns each key's state
        (meaningful for failures)."""
        states = []
        for key, outcome in outcomes:
            if outcome == "failure":
                states.append(self.lockout_failure(key, policy, token))
                continue
            if outcome == "success":
                self.lockout_success(key, token)
            else:
                self.lockout_release(key, token)
            states.append(LockState(False, 0))
        return states

    @abc.abstractmethod
    def lockout_reset(self, key: str) -> None:
        """Forget ``key`` entirely: failures, locks and reservations."""

    # -- fixed-window throttle -------------------------------------------

    @abc.abstractmethod
    def throttle_status(self, key: str) -> ThrottleCount:
        """Peek at a failure counter."""

    @abc.abstractmethod
    def throttle_hit(self, key: str, window_seconds: float) -> ThrottleCount:
        """Add one failure; the first one starts the window and its TTL."""

    @abc.abstractmethod
    def throttle_reset(self, key: str) -> None:
        """Delete a failure counter."""

    # -- sliding-window rate limit ---------------------------------------

    def rate_limit_hit(self, key: str, limits: Sequence[Limit]) -> RateLimitResult:
        """Count one hit against all ``limits`` if every one allows it."""
        return self.rate_limit_hit_many([key], limits)

    @abc.abstractmethod
    def rate_limit_hit_many(
        self, keys: Sequence[str], limits: Sequence[Limit]
    ) -> RateLimitResult:
        """Count one hit on every key against all ``limits`` if every key and
        limit allows it; the result is the refusal, or the tightest key."""

    @abc.abstractmethod
    def rate_limit_reset(self, key: str | None = None) -> None:
        """Clear ``key``'s windows, or every rate-limit window when None."""

    # -- single-use tokens -----------------------------------------------

    @abc.abstractmethod
    def token_put(self, token_hash: str, subject: str, ttl: float) -> None:
        """Store ``subject`` under ``token_hash`` for ``ttl`` seconds."""

    @abc.abstractmethod
    def token_take(self, token_hash: str) -> str | None:
        """Return and delete the subject, atomically: one taker wins."""

    # -- administration --------------------------------------------------

    @abc.abstractmethod
    def lockout_keys(self) -> Iterator[str]:
        """Yield every lockout key with state (hashed ones as their hash)."""

    @abc.abstractmethod
    def clear(self) -> None:
        """Delete every key under this store's prefix."""

    def identifier_of(self, storage_key: str) -> str:
        """The identifier inside ``<prefix>:{<identifier>}:<kind>``."""
        return storage_key[len(self.prefix) + 2 : storage_key.rindex("}")]

    # -- health ----------------------------------------------------------

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise :class:`~flask_lockout.StorageError` unless storage answers."""
