"""Fixed-window failure throttle, independent of Flask."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Protocol, cast, runtime_checkable

from .errors import StorageError, StorageOutage, StorageUnavailable, TooManyAttempts
from .policy import require_positive, require_whole, whole_seconds
from .storage.base import Storage, ThrottleCount, ThrottleStorage, key_part
from .storage.clients import is_redis_client
from .storage.factory import storage_from_client

logger = logging.getLogger("flask_lockout")

#: ``Retry-After`` seconds of the 503 sent when storage is down and the
#: throttle fails closed.
OUTAGE_RETRY_AFTER = 5


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


class OutageLog:
    """Warns of storage outages on the ``flask_lockout`` logger, at most once
    per ``interval`` seconds, so an outage under load does not flood the log."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._last = -math.inf

    def warn(self, what: str, error: StorageError, fail_open: bool) -> None:
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            logger.warning(
                "%s storage failed (%s); failing %s.",
                what,
                error,
                "open" if fail_open else "closed",
            )


@dataclass(frozen=True)
class ThrottleStatus:
    """A key's failures in the current window.

    >>> from flask_lockout import MemoryStorage
    >>> AttemptThrottle(MemoryStorage(), max_attempts=1, window_seconds=60).hit("k")
    ThrottleStatus(attempts=1, blocked=True, retry_after_seconds=60)
    """

    attempts: int
    #: True when ``attempts >= max_attempts``.
    blocked: bool
    #: Whole seconds until the window ends while blocked, else 0.
    retry_after_seconds: int


class AttemptThrottle:
    """Blocks a key after ``max_attempts`` failures in a fixed window.

    The window starts at the first failure and lasts ``window_seconds``.

    :param backend: a Redis client (``redis.Redis``, flask-redis, fakeredis,
        valkey), a bundled store such as ``MemoryStorage()``, or any object
        with ``get``, ``incr``, ``expire``, ``ttl`` and ``delete``. Redis
        clients and bundled stores count in one atomic step; other objects
        in several, repairing a counter found without a TTL.
    :param namespace: keeps throttles that share a backend apart.
    :param fail_open: when storage fails, let requests through (and log it);
        when False, refuse them with :class:`~flask_lockout.StorageOutage` (503).

    >>> from flask_lockout import MemoryStorage
    >>> throttle = AttemptThrottle(MemoryStorage(), max_attempts=2, window_seconds=60)
    >>> throttle.hit("alice").blocked, throttle.hit("alice").blocked
    (False, True)
    """

    def __init__(
        self,
        backend: ThrottleBackend | Storage | object,
        max_attempts: int,
        window_seconds: float,
        namespace: str = "throttle",
        fail_open: bool = True,
    ) -> None:
        require_whole("max_attempts", max_attempts)
        require_positive("window_seconds", window_seconds)
        self.max_attempts = max_attempts
        self.window_seconds = window_seconds
        self.namespace = namespace
        self.fail_open = fail_open
        self._counter = _counter_for(backend)
        self._outages = OutageLog()

    def _key(self, key: str) -> str:
        return f"{self.namespace}:{key}"

    def _status(self, found: ThrottleCount) -> ThrottleStatus:
        blocked = found.attempts >= self.max_attempts
        retry_after = whole_seconds(found.ttl) if blocked else 0
        return ThrottleStatus(found.attempts, blocked, retry_after)

    def _outage(self, exc: StorageError) -> ThrottleStatus:
        self._outages.warn(f"Throttle {self.namespace!r}", exc, self.fail_open)
        if self.fail_open:
            return ThrottleStatus(0, False, 0)
        raise StorageOutage(OUTAGE_RETRY_AFTER) from exc

    def status(self, key: str) -> ThrottleStatus:
        """Peek at ``key`` without counting anything."""
        try:
            return self._status(self._counter.throttle_status(self._key(key)))
        except StorageError as exc:
            return self._outage(exc)

    def hit(self, key: str) -> ThrottleStatus:
        """Count one failure for ``key``; returns the status after it."""
        try:
            found = self._counter.throttle_hit(self._key(key), self.window_seconds)
        except StorageError as exc:
            return self._outage(exc)
        return self._status(found)

    def reset(self, key: str) -> None:
        """Forget ``key``'s failures.

        :raises StorageError: when storage fails; nothing to fail open to.
        """
        self._counter.throttle_reset(self._key(key))

    def raise_if_blocked(self, key: str) -> ThrottleStatus:
        """Raise :class:`~flask_lockout.TooManyAttempts` (429, ``Retry-After``)
        when ``key`` is blocked; otherwise return its status."""
        status = self.status(key)
        if status.blocked:
            raise TooManyAttempts(status.retry_after_seconds)
        return status


class _CommandCounter:
    """A throttle counter over plain ``get``/``incr``/``expire``/``ttl``/``delete``."""

    def __init__(self, backend: ThrottleBackend) -> None:
        self.backend = backend

    def _call(self, name: str, *args: object) -> object:
        try:
            return getattr(self.backend, name)(*args)
        except StorageError:
            raise
        except Exception as exc:  # a custom backend's own error type
            raise StorageUnavailable(f"{name} failed: {exc!r}") from exc

    def throttle_status(self, key: str) -> ThrottleCount:
        key = key_part(key)
        count = _as_int(self._call("get", key))
        ttl = _as_int(self._call("ttl", key))
        return ThrottleCount(count, max(ttl, 0))

    def throttle_hit(self, key: str, window_seconds: float) -> ThrottleCount:
        key = key_part(key)
        window = max(1, math.ceil(window_seconds))
        count = _as_int(self._call("incr", key))
        ttl = window if count == 1 else _as_int(self._call("ttl", key))
        if count == 1 or ttl < 0:
            # Also repairs a counter whose first EXPIRE was lost.
            self._call("expire", key, window)
            ttl = window
        return ThrottleCount(count, ttl)

    def throttle_reset(self, key: str) -> None:
        self._call("delete", key_part(key))


def _as_int(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, bytes):
        value = value.decode()
    return int(str(value))


def _counter_for(backend: object) -> ThrottleStorage | _CommandCounter:
    if isinstance(backend, Storage):
        return cast(ThrottleStorage, backend)
    if is_redis_client(backend):
        return storage_from_client(backend)
    if isinstance(backend, ThrottleBackend):
        return _CommandCounter(backend)
    raise TypeError(
        "backend must be a Redis client, a bundled store such as MemoryStorage(),"
        f" or an object with get/incr/expire/ttl/delete, not {type(backend).__name__}."
    )
