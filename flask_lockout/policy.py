"""Policies and the pure decisions every store shares: no I/O, no Flask.

The memory store applies these functions directly; the Lua scripts in
``storage/lua`` apply the same arithmetic on Redis server time.
"""

from __future__ import annotations

import enum
import itertools
import math
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NamedTuple, Protocol, runtime_checkable

#: A custom ``backoff`` is asked for lock numbers up to this one; later locks
#: reuse its answer, so every store (a Lua script too) applies one fixed table.
BACKOFF_SCHEDULE_LENGTH = 64

#: Seconds during which an attempt with no verdict (a 5xx) can still be given
#: back. Past it the attempt simply stays counted as a failure.
DEFAULT_RESERVATION_SECONDS = 30.0


def reservation_token() -> str:
    """A token naming one reservation: unique, never shown to clients.

    A random prefix per process and a counter, not ``secrets`` per call:
    ``os.urandom`` is a system call that lets go of the GIL, and under load
    every such call can cost a wait for it."""
    source = _token_source
    if os.getpid() != source[0]:
        # A forked child (also where no fork hooks run, as under uWSGI)
        # must not repeat its parent's tokens.
        source = _new_token_source()
    return f"{source[1]}{next(source[2]):x}"


def _new_token_source() -> tuple[int, str, itertools.count[int]]:
    global _token_source
    _token_source = (os.getpid(), secrets.token_hex(8), itertools.count())
    return _token_source


_token_source: tuple[int, str, itertools.count[int]] = (0, "", itertools.count())


def whole_seconds(seconds: float) -> int:
    """Seconds a client is told to wait: whole, rounded up, at least 1.

    Rounded to the millisecond first, so float noise such as
    ``(t + 60) - t == 60.00000000000001`` never turns a 60 s lock into 61.

    >>> whole_seconds(60.00000000000001), whole_seconds(59.2), whole_seconds(0)
    (60, 60, 1)
    """
    return max(1, math.ceil(round(seconds, 3)))


def require_whole(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as a whole number of at least ``minimum``, or ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(
            f"{name} must be a whole number of at least {minimum}, not {value!r}."
        )
    return value


def require_positive(name: str, value: Any) -> float:
    """``value`` as a finite number greater than 0, or ValueError."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
    ):
        raise ValueError(f"{name} must be a finite number, not {value!r}.")
    if value <= 0:
        raise ValueError(f"{name} must be greater than 0, not {value!r}.")
    return value


# -- login lockout --------------------------------------------------------------

#: The longest window, lock or reset a policy may name: ten years, which is
#: forever for a lock, and far inside what Redis's millisecond times hold.
MAX_POLICY_SECONDS = 10 * 366 * 86400


@runtime_checkable
class LockoutBackend(Protocol):
    """A store that applies a lockout policy to keys.

    Implement this to plug a custom store into :class:`~flask_lockout.LoginLockout`.
    The bundled stores also reserve attempts atomically; a custom backend
    is checked with ``is_locked`` instead. ::

        class AuditedBackend:
            def is_locked(self, key): ...
            def record_failure(self, key): ...
            def record_success(self, key): ...

        lockout = LoginLockout(LockoutConfig(backend=AuditedBackend()))
    """

    def is_locked(self, key: str) -> tuple[bool, int]: ...

    def record_failure(self, key: str) -> tuple[bool, int]: ...

    def record_success(self, key: str) -> None: ...


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

    With ``window_from_last_failure`` the window ends ``window_seconds``
    after the latest failure instead: failures paced under the limit are
    remembered as long as they keep coming (account keys, against patient
    guessing).

    :raises ValueError: naming the field, when a value cannot work.

    >>> config = LockoutConfig(max_failures=3, base_lock_seconds=60)
    >>> [config.lock_seconds(n) for n in (1, 2, 3)]
    [60.0, 120.0, 240.0]
    >>> LockoutConfig(max_failures=0)
    Traceback (most recent call last):
      ...
    ValueError: max_failures must be a whole number of at least 1, not 0.
    """

    max_failures: int = 5
    window_seconds: float = 900
    base_lock_seconds: float = 60
    backoff_multiplier: float = 2.0
    max_lock_seconds: float = 3600
    reset_after_seconds: float = 86400
    backend: LockoutBackend | None = field(default=None, compare=False)
    backoff: Callable[[int], float] | None = field(default=None, compare=False)
    window_from_last_failure: bool = False

    def __post_init__(self) -> None:
        require_whole("max_failures", self.max_failures)
        for name in (
            "window_seconds",
            "base_lock_seconds",
            "max_lock_seconds",
            "reset_after_seconds",
            "backoff_multiplier",
        ):
            require_positive(name, getattr(self, name))
        for name in (
            "window_seconds",
            "base_lock_seconds",
            "max_lock_seconds",
            "reset_after_seconds",
        ):
            # Redis keeps times as 64-bit milliseconds: "forever" written as
            # sys.maxsize would wrap around to the past and drop the lock.
            if getattr(self, name) > MAX_POLICY_SECONDS:
                raise ValueError(
                    f"{name} must be at most {MAX_POLICY_SECONDS} (ten years),"
                    f" not {getattr(self, name)!r}."
                )
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


class Outcome(enum.Enum):
    """How a reserved attempt ends. A reservation already counts as a
    failure, so ``FAILURE`` needs no storage call."""

    #: The attempt stands as a failure.
    FAILURE = "failure"
    #: The account proved itself: give the attempt back and forgive the
    #: failures typed with the same spelling.
    SUCCESS = "success"
    #: The view never ran (another key or a rate limit refused): give the
    #: attempt back.
    RELEASE = "release"
    #: The view ran but reached no verdict the app declared (a 5xx): give
    #: the attempt back, but only once per key and failure window, since a
    #: password check that raises on a mismatch also ends in a 5xx.
    UNKNOWN = "unknown"
    #: Forget the key entirely.
    CLEAR = "clear"


class LockState(NamedTuple):
    """What storage knows about one lockout key."""

    locked: bool
    retry_after: int
    failures: int = 0
    lock_number: int = 0


#: What a store hands back with a reservation to give it back later (the
#: Redis store's state before and after it); opaque to everything else.
Receipt = str | bytes


class Reservation(NamedTuple):
    """The answer to a request for one verification attempt.

    A granted attempt is already counted as a failure; ``locked`` then says
    that this failure locked the key, for ``retry_after`` seconds. A refused
    one (``granted`` false) found the key locked. ``receipt`` goes back to
    the store with the settlement.
    """

    granted: bool
    locked: bool
    retry_after: int
    receipt: Receipt = ""


#: Spellings remembered per key for forgiveness; more share one bucket that a
#: success never forgives.
MAX_SPELLINGS = 8
OTHER_SPELLINGS = "~"
#: What an account key's attempt is counted under when nobody knows which
#: spelling the view checked (the request named the account more than once,
#: or a device's bucket): never forgiven, and given back only from its own
#: count, like a typed spelling's.
UNTYPED_SPELLING = "?"


class Pending(NamedTuple):
    """What giving a granted attempt back needs: the state before it and
    right after it, and the spelling it counted."""

    before: tuple[Any, ...]
    after: tuple[Any, ...]
    spelling: str


@dataclass(slots=True)
class LockRecord:
    """One key's lockout state, as the memory store keeps it.

    ``total`` counts failures since the key was last clean, and
    ``spellings`` how many of them each typed spelling of the account made,
    so a success forgives only what its own spelling caused.
    """

    failures: int = 0
    window_start: float = 0.0
    lock_number: int = 0
    locked_until: float = 0.0
    last_failure: float = 0.0
    total: int = 0
    spellings: dict[str, int] | None = None
    #: Until when a no-verdict give-back (``Outcome.UNKNOWN``) was used up.
    given_back_until: float = 0.0
    #: When a store may forget this record (kept here to save a wrapper).
    expires_at: float = 0.0

    def state_expires(self, policy: LockoutConfig) -> float:
        if self.lock_number:
            return max(
                self.last_failure + policy.reset_after_seconds, self.locked_until
            )
        if self.failures or self.total:
            if policy.window_from_last_failure:
                return self.last_failure + policy.window_seconds
            return self.window_start + policy.window_seconds
        return -math.inf

    def lasts_until(self, policy: LockoutConfig) -> float:
        return max(self.state_expires(policy), self.given_back_until)

    def refresh(self, policy: LockoutConfig, now: float) -> None:
        """Forget state that has expired."""
        if now >= self.state_expires(policy):
            self._restore((0, 0.0, 0, 0.0, 0.0, 0))
            self.spellings = None
        if self.given_back_until <= now:
            self.given_back_until = 0.0

    def state(self, now: float) -> LockState:
        locked = self.locked_until > now
        retry_after = whole_seconds(self.locked_until - now) if locked else 0
        return LockState(locked, retry_after, self.failures, self.lock_number)

    def count_failure(self, policy: LockoutConfig, now: float, spelling: str) -> bool:
        """Count one failure; False (nothing changes) while locked."""
        if self.locked_until > now:
            return False
        self.last_failure = now
        if self.lock_number:
            self.lock_number += 1
            self.locked_until = now + policy.lock_seconds(self.lock_number)
        else:
            if self.failures == 0:
                self.window_start = now
            self.failures += 1
            if self.failures >= policy.max_failures:
                self.failures = 0
                self.lock_number = 1
                self.locked_until = now + policy.lock_seconds(1)
        self.total += 1
        if spelling:
            spellings = self.spellings if self.spellings is not None else {}
            if spelling not in spellings and len(spellings) >= MAX_SPELLINGS:
                spelling = OTHER_SPELLINGS
            spellings[spelling] = spellings.get(spelling, 0) + 1
            self.spellings = spellings
        return True

    def reserve(
        self, policy: LockoutConfig, now: float, spelling: str
    ) -> tuple[Reservation, Pending | None]:
        """Grant one attempt and count it as a failure, or refuse while
        locked. A granted attempt comes with what giving it back needs."""
        if self.locked_until > now:
            locked = Reservation(False, True, whole_seconds(self.locked_until - now))
            return locked, None
        before = self._snapshot()
        self.count_failure(policy, now, spelling)
        state = self.state(now)
        pending = Pending(before, self._snapshot(), spelling)
        return Reservation(True, state.locked, state.retry_after), pending

    def release(
        self,
        pending: Pending | None,
        now: float,
        policy: LockoutConfig | None = None,
    ) -> None:
        """Give a pending attempt back: undo it exactly when nothing came
        after it, else take back one failure unless a lock has come since.
        ``None`` (unknown or expired) gives nothing back.

        With ``policy`` (a view that ran, then failed without a verdict) only
        once per failure window: the give-back is remembered for that long.
        """
        if pending is None:
            return
        before, after, spelling = pending
        if spelling and not (self.spellings or {}).get(spelling):
            return  # forgiven since, or counted with the other spellings
        if policy is not None:
            if self.given_back_until > now or after[2] > before[2]:
                # One no-verdict give-back per window, and never one that
                # would undo the lock this attempt set: it counts.
                return
            self.given_back_until = now + policy.window_seconds
        if self._snapshot() == after:
            self._restore(before)
        elif self.lock_number == before[2] and self.failures > 0:
            self.failures -= 1
            self.total -= 1
        else:
            return  # a lock came since: the attempt stays counted
        self._forget_spelling(spelling, 1)

    def succeed(self, pending: Pending | None, spelling: str, now: float) -> None:
        """Give the attempt back and forgive the failures of ``spelling``;
        when every failure since clean had that spelling, forget them all."""
        self.release(pending, now)
        mine = (self.spellings or {}).get(spelling, 0) if spelling else 0
        if mine and mine >= self.total:
            self._restore((0, 0.0, 0, 0.0, 0.0, 0))
            self.spellings = None
        elif mine:
            self.failures = max(0, self.failures - mine)
            self.total -= mine
            self._forget_spelling(spelling, mine)

    def unlock(self, now: float) -> None:
        """End the current lock; probation stays, so the next failure locks
        again for longer."""
        if self.locked_until > now:
            self.locked_until = now
        self.failures = 0

    def protected(self) -> bool:
        """True while forgetting this record would hand out guesses."""
        return bool(
            self.failures or self.lock_number or self.total or self.given_back_until
        )

    def _forget_spelling(self, spelling: str, count: int) -> None:
        # A give-back takes only from the spelling's own count, which stays
        # (at 0 too) until the record is clean: an attempt a success forgave,
        # one from before the record was clean, or one counted with the
        # other spellings past the cap gives nothing back, so none takes a
        # failure typed with another spelling.
        spellings = self.spellings
        if spelling and spellings and spelling in spellings:
            spellings[spelling] = max(0, spellings[spelling] - count)

    def _snapshot(self) -> tuple[Any, ...]:
        return (
            self.failures,
            self.window_start,
            self.lock_number,
            self.locked_until,
            self.last_failure,
            self.total,
        )

    def _restore(self, saved: tuple[Any, ...]) -> None:
        (
            self.failures,
            self.window_start,
            self.lock_number,
            self.locked_until,
            self.last_failure,
            self.total,
        ) = saved
