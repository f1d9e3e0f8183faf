"""Login lockout with exponential backoff, independent of Flask."""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from .storage.base import LockoutBackend, Reservation, Storage

if TYPE_CHECKING:
    from types import TracebackType

#: A custom ``backoff`` is asked for lock numbers up to this one; later locks
#: reuse its answer. This keeps the schedule a fixed table that every store,
#: including a Lua script, applies identically.
BACKOFF_SCHEDULE_LENGTH = 64

#: Seconds after which an attempt that was reserved but never settled (a
#: crashed worker, a killed request) stops counting against the key.
DEFAULT_RESERVATION_SECONDS = 30.0


@dataclass(frozen=True)
class LockoutConfig:
    """The lockout policy for one kind of key.

    Failures are counted in a window of ``window_seconds`` that starts at the
    first failure; the ``max_failures``-th locks the key for
    ``base_lock_seconds``. After a lock ends the key is on probation: each
    further failure locks it again, lock *n* lasting
    ``min(base_lock_seconds * backoff_multiplier ** (n - 1), max_lock_seconds)``
    (or ``min(backoff(n), max_lock_seconds)``). A success, or
    ``reset_after_seconds`` without a failure, makes the key clean again.

    :raises ValueError: naming the field, when a value cannot work.

    >>> config = LockoutConfig(max_failures=3, base_lock_seconds=60)
    >>> [config.lock_seconds(n) for n in (1, 2, 3)]
    [60.0, 120.0, 240.0]
    >>> LockoutConfig(max_failures=0)
    Traceback (most recent call last):
      ...
    ValueError: max_failures must be at least 1.
    """

    max_failures: int = 5
    window_seconds: float = 900
    base_lock_seconds: float = 60
    backoff_multiplier: float = 2.0
    max_lock_seconds: float = 3600
    reset_after_seconds: float = 86400
    backend: LockoutBackend | None = field(default=None, compare=False)
    backoff: Callable[[int], float] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.max_failures, bool) or not isinstance(
            self.max_failures, int
        ):
            raise ValueError("max_failures must be a whole number.")
        if self.max_failures < 1:
            raise ValueError("max_failures must be at least 1.")
        for name in (
            "window_seconds",
            "base_lock_seconds",
            "max_lock_seconds",
            "reset_after_seconds",
        ):
            _require_positive(name, getattr(self, name))
        _require_number("backoff_multiplier", self.backoff_multiplier)
        if self.backoff_multiplier < 1:
            raise ValueError("backoff_multiplier must be at least 1.")
        if self.max_lock_seconds < self.base_lock_seconds:
            raise ValueError(
                "max_lock_seconds must be at least base_lock_seconds"
                f" ({self.max_lock_seconds} < {self.base_lock_seconds})."
            )
        if self.backoff is not None and not callable(self.backoff):
            raise ValueError("backoff must be a callable taking the lock number.")
        if self.backoff is not None:
            self.lock_schedule  # noqa: B018 - validate the custom backoff now

    @cached_property
    def lock_schedule(self) -> tuple[float, ...] | None:
        """Durations of a custom ``backoff`` for locks 1 to 64, capped; else None."""
        if self.backoff is None:
            return None
        schedule = []
        for number in range(1, BACKOFF_SCHEDULE_LENGTH + 1):
            seconds = self.backoff(number)
            if (
                isinstance(seconds, bool)
                or not isinstance(seconds, int | float)
                or not seconds > 0
            ):
                raise ValueError(
                    f"backoff({number}) returned {seconds!r}; it must return a"
                    " positive number of seconds."
                )
            schedule.append(min(float(seconds), self.max_lock_seconds))
        return tuple(schedule)

    def lock_seconds(self, lock_number: int) -> float:
        """How long lock number ``lock_number`` (1 for the first) lasts."""
        schedule = self.lock_schedule
        if schedule is not None:
            return schedule[min(lock_number, BACKOFF_SCHEDULE_LENGTH) - 1]
        try:
            # Floats, never ints: an int power of a huge lock number would be
            # computed exactly, without end.
            seconds = float(self.base_lock_seconds) * float(
                self.backoff_multiplier
            ) ** (lock_number - 1)
        except OverflowError:
            return self.max_lock_seconds
        return min(seconds, self.max_lock_seconds)


def _require_number(name: str, value: Any) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
    ):
        raise ValueError(f"{name} must be a finite number, not {value!r}.")


def _require_positive(name: str, value: Any) -> None:
    _require_number(name, value)
    if value <= 0:
        raise ValueError(f"{name} must be greater than 0, not {value!r}.")


class StorageLockoutBackend:
    """A :class:`LockoutBackend` that applies ``policy`` on a bundled store."""

    def __init__(self, storage: Storage, policy: LockoutConfig) -> None:
        self.storage = storage
        self.policy = policy

    def is_locked(self, key: str) -> tuple[bool, int]:
        state = self.storage.lockout_status(key, self.policy)
        return state.locked, state.retry_after

    def record_failure(self, key: str) -> tuple[bool, int]:
        state = self.storage.lockout_failure(key, self.policy)
        return state.locked, state.retry_after

    def record_success(self, key: str) -> None:
        self.storage.lockout_success(key)

    def reserve(self, key: str, token: str, ttl: float) -> Reservation:
        return self.storage.lockout_reserve(key, self.policy, token, ttl)

    def settle_failure(self, key: str, token: str) -> tuple[bool, int]:
        state = self.storage.lockout_failure(key, self.policy, token)
        return state.locked, state.retry_after

    def settle_success(self, key: str, token: str) -> None:
        self.storage.lockout_success(key, token)

    def release(self, key: str, token: str) -> None:
        self.storage.lockout_release(key, token)


class LoginLockout:
    """Locks keys out after repeated failures, with exponential backoff.

    :param config: the policy; :class:`LockoutConfig` defaults when None.
    :param clock: seconds for the default in-memory store
        (default :func:`time.monotonic`); step it in tests.
    :param storage: a bundled store (``MemoryStorage``, ``RedisStorage``),
        a storage URI or a Redis client, used instead of the default memory
        store. Ignored when ``config.backend`` is set.

    >>> lockout = LoginLockout(LockoutConfig(max_failures=2))
    >>> lockout.record_failure("login:alice")
    (False, 0)
    >>> lockout.record_failure("login:alice")
    (True, 60)

    Use :meth:`attempt` around the password check so that concurrent requests
    for one key never get more guesses than the policy allows.
    """

    def __init__(
        self,
        config: LockoutConfig | None = None,
        *,
        clock: Callable[[], float] | None = None,
        storage: object = None,
    ) -> None:
        self.config = config if config is not None else LockoutConfig()
        self.backend: LockoutBackend
        if self.config.backend is not None:
            if storage is not None or clock is not None:
                raise ValueError(
                    "config.backend is set: pass neither storage nor clock."
                )
            self.backend = self.config.backend
            return
        from .storage import MemoryStorage, as_storage

        if storage is None:
            store: Storage = MemoryStorage(clock=clock or time.monotonic)
        elif clock is not None:
            raise ValueError(
                "clock= drives the default memory store only; pass"
                " MemoryStorage(clock=...) as storage instead."
            )
        else:
            store = as_storage(storage)
        self.backend = StorageLockoutBackend(store, self.config)

    def is_locked(self, key: str) -> tuple[bool, int]:
        """``(locked, retry_after)`` for ``key``; never changes state."""
        return self.backend.is_locked(key)

    def record_failure(self, key: str) -> tuple[bool, int]:
        """Count a failure; returns ``(locked, retry_after)`` afterwards."""
        return self.backend.record_failure(key)

    def record_success(self, key: str) -> None:
        """Clear every failure and lock of ``key``."""
        self.backend.record_success(key)

    def attempt(
        self, key: str, *, reservation_seconds: float = DEFAULT_RESERVATION_SECONDS
    ) -> Attempt:
        """Reserve one verification attempt for ``key``, atomically.

        The reservation counts against the key's remaining budget until it is
        settled with :meth:`Attempt.failed` or :meth:`Attempt.succeeded`,
        released, or expires after ``reservation_seconds``. Check
        :attr:`Attempt.granted` before verifying anything::

            with lockout.attempt(key) as attempt:
                if not attempt.granted:
                    abort(429)
                if check_password(...):
                    attempt.succeeded()
                else:
                    attempt.failed()
        """
        if not reservation_seconds > 0:
            raise ValueError("reservation_seconds must be greater than 0.")
        backend = self.backend
        if isinstance(backend, StorageLockoutBackend):
            token = secrets.token_hex(8)
            result = backend.reserve(key, token, reservation_seconds)
            return Attempt(backend, key, token if result.granted else None, result)
        # A custom backend cannot reserve; this check is not atomic.
        locked, retry_after = backend.is_locked(key)
        return Attempt(backend, key, None, Reservation(not locked, locked, retry_after))


class Attempt:
    """One reserved verification attempt; see :meth:`LoginLockout.attempt`.

    >>> lockout = LoginLockout(LockoutConfig(max_failures=1))
    >>> with lockout.attempt("login:alice") as attempt:
    ...     attempt.granted, attempt.failed()
    (True, (True, 60))
    >>> lockout.attempt("login:alice").locked
    True
    """

    def __init__(
        self,
        backend: LockoutBackend,
        key: str,
        token: str | None,
        reservation: Reservation,
    ) -> None:
        self.key = key
        self.granted = reservation.granted
        #: True when refused because the key is locked (not merely busy).
        self.locked = reservation.locked
        #: Whole seconds to wait when not granted.
        self.retry_after = reservation.retry_after
        self._backend = backend
        self._token = token
        self._settled = not reservation.granted

    def failed(self) -> tuple[bool, int]:
        """Count the attempt as a failure; returns ``(locked, retry_after)``."""
        self._settle()
        backend = self._backend
        if isinstance(backend, StorageLockoutBackend) and self._token is not None:
            return backend.settle_failure(self.key, self._token)
        return backend.record_failure(self.key)

    def succeeded(self) -> None:
        """Count the attempt as a success: the key becomes clean."""
        self._settle()
        backend = self._backend
        if isinstance(backend, StorageLockoutBackend) and self._token is not None:
            backend.settle_success(self.key, self._token)
        else:
            backend.record_success(self.key)

    def release(self) -> None:
        """Give the attempt back without counting it (idempotent)."""
        if self._settled:
            return
        self._settled = True
        backend = self._backend
        if isinstance(backend, StorageLockoutBackend) and self._token is not None:
            backend.release(self.key, self._token)

    def _settle(self) -> None:
        if not self.granted:
            raise RuntimeError(
                "This attempt was not granted; there is nothing to settle."
            )
        if self._settled:
            raise RuntimeError("This attempt is already settled.")
        self._settled = True

    def __enter__(self) -> Attempt:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
