"""Login lockout with exponential backoff, independent of Flask."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .policy import (
    DEFAULT_RESERVATION_SECONDS,
    LockoutBackend,
    LockoutConfig,
    Outcome,
    Reservation,
    reservation_token,
)
from .storage.base import AttemptKey, LockoutStorage, Settlement
from .storage.factory import as_storage
from .storage.memory import MemoryStorage

if TYPE_CHECKING:
    from types import TracebackType


class StorageLockoutBackend:
    """A :class:`LockoutBackend` that applies ``policy`` on a bundled store,
    reserving attempts atomically (each counted as a failure at once)."""

    def __init__(self, storage: LockoutStorage, policy: LockoutConfig) -> None:
        self.storage = storage
        self.policy = policy

    def is_locked(self, key: str) -> tuple[bool, int]:
        state = self.storage.lockout_status(key, self.policy)
        return state.locked, state.retry_after

    def record_failure(self, key: str) -> tuple[bool, int]:
        state = self.storage.lockout_failure(key, self.policy)
        return state.locked, state.retry_after

    def record_success(self, key: str) -> None:
        self.storage.lockout_reset(key)

    def reserve(self, key: str, token: str, ttl: float) -> Reservation:
        return self.storage.lockout_reserve_all(
            [AttemptKey(key)], self.policy, token, ttl
        )[0]

    def settle(
        self, key: str, token: str, outcome: Outcome, reservation: Reservation
    ) -> tuple[bool, int] | None:
        if outcome is Outcome.SUCCESS:
            outcome = Outcome.CLEAR  # without Flask, a success clears the key
        self.storage.lockout_settle_all(
            [Settlement(key, outcome, "", reservation.receipt)], self.policy, token
        )
        return None  # a failure stands as the reservation counted it


class _CheckedBackend:
    """Reserve and settle over a custom backend: a check, then a count.
    Not atomic; a custom backend has nothing better to offer."""

    def __init__(self, backend: LockoutBackend) -> None:
        self.backend = backend

    def reserve(self, key: str, token: str, ttl: float) -> Reservation:
        locked, retry_after = self.backend.is_locked(key)
        return Reservation(not locked, locked, retry_after)

    def settle(
        self, key: str, token: str, outcome: Outcome, reservation: Reservation
    ) -> tuple[bool, int] | None:
        if outcome is Outcome.FAILURE:
            return self.backend.record_failure(key)
        if outcome in (Outcome.SUCCESS, Outcome.CLEAR):
            self.backend.record_success(key)
        return None


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
            self._reserving: StorageLockoutBackend | _CheckedBackend = _CheckedBackend(
                self.backend
            )
            return
        store: LockoutStorage
        if storage is None:
            store = MemoryStorage(clock=clock or time.monotonic)
        elif clock is not None:
            raise ValueError(
                "clock= drives the default memory store only; pass"
                " MemoryStorage(clock=...) as storage instead."
            )
        else:
            store = as_storage(storage)
        self.backend = self._reserving = StorageLockoutBackend(store, self.config)

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

        The attempt counts as a failure from the moment it is granted, so
        concurrent requests never get more guesses than the policy allows,
        however long the check takes. :meth:`Attempt.succeeded` clears the
        key; :meth:`Attempt.release` (or leaving the ``with`` block without a
        verdict) gives the attempt back within ``reservation_seconds``.
        Check :attr:`Attempt.granted` before verifying anything::

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
        token = reservation_token()
        reservation = self._reserving.reserve(key, token, reservation_seconds)
        return Attempt(self._reserving, key, token, reservation)


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
        backend: StorageLockoutBackend | _CheckedBackend,
        key: str,
        token: str,
        reservation: Reservation,
    ) -> None:
        #: The key the attempt was reserved on.
        self.key = key
        #: True when the attempt may be verified: it is counted already.
        self.granted = reservation.granted
        #: True when refused because the key is locked.
        self.locked = reservation.locked and not reservation.granted
        #: Whole seconds to wait when not granted.
        self.retry_after = 0 if reservation.granted else reservation.retry_after
        self._reservation = reservation
        self._backend = backend
        self._token = token
        self._settled = not reservation.granted

    def failed(self) -> tuple[bool, int]:
        """Count the attempt as a failure; returns ``(locked, retry_after)``."""
        found = self._settle(Outcome.FAILURE)
        if found is not None:
            return found
        return self._reservation.locked, self._reservation.retry_after

    def succeeded(self) -> None:
        """Count the attempt as a success: the key becomes clean."""
        self._settle(Outcome.SUCCESS)

    def release(self) -> None:
        """Give the attempt back without counting it (idempotent)."""
        if not self._settled:
            self._settle(Outcome.RELEASE)

    def _settle(self, outcome: Outcome) -> tuple[bool, int] | None:
        if not self.granted:
            raise RuntimeError(
                "This attempt was not granted; there is nothing to settle."
            )
        if self._settled:
            raise RuntimeError("This attempt is already settled.")
        self._settled = True
        return self._backend.settle(self.key, self._token, outcome, self._reservation)

    def __enter__(self) -> Attempt:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
