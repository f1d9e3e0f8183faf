"""Storage backends and the factory that picks one from a URI or a client."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ConfigurationError
from .base import (
    LockoutBackend,
    LockState,
    RateLimitResult,
    RateLimitStore,
    Reservation,
    Storage,
    ThrottleBackend,
    ThrottleCount,
    key_part,
)
from .memory import DEFAULT_MAX_KEYS, MemoryStorage
from .redis import RedisStorage, is_redis_client

__all__ = [
    "DEFAULT_MAX_KEYS",
    "LockState",
    "LockoutBackend",
    "MemoryStorage",
    "RateLimitResult",
    "RateLimitStore",
    "RedisStorage",
    "Reservation",
    "Storage",
    "ThrottleBackend",
    "ThrottleCount",
    "as_storage",
    "is_redis_client",
    "key_part",
    "storage_from_client",
    "storage_from_uri",
]

_REDIS_SCHEMES = frozenset(
    {"redis", "rediss", "unix", "redis+cluster", "valkey", "valkeys", "valkey+cluster"}
)


def storage_from_uri(
    uri: str,
    *,
    prefix: str = "lockout",
    max_keys: int = DEFAULT_MAX_KEYS,
    clock: Callable[[], float] | None = None,
) -> Storage:
    """Build storage from a URI, as ``LOCKOUT_STORAGE_URI`` does.

    ``memory://`` (the default), ``redis://``, ``rediss://``, ``unix://``,
    ``redis+cluster://host:port,host:port``, ``valkey://`` and ``valkeys://``.
    Redis clients connect on first use, so building one never fails because
    Redis is down.

    :param max_keys: bound of a memory store.
    :param clock: clock of a memory store (Redis uses its server time).
    :raises ConfigurationError: for an unknown scheme, naming
        ``LOCKOUT_STORAGE_URI``.

    >>> type(storage_from_uri("memory://")).__name__
    'MemoryStorage'
    >>> type(storage_from_uri("redis://127.0.0.1:6379/0")).__name__
    'RedisStorage'
    """
    if not isinstance(uri, str) or "://" not in uri:
        raise ConfigurationError(
            f"LOCKOUT_STORAGE_URI must be a URI such as 'memory://' or"
            f" 'redis://localhost:6379/0', not {uri!r}."
        )
    scheme = uri.split("://", 1)[0].lower()
    if scheme == "memory":
        if clock is None:
            return MemoryStorage(max_keys=max_keys, prefix=prefix)
        return MemoryStorage(clock=clock, max_keys=max_keys, prefix=prefix)
    if scheme in _REDIS_SCHEMES:
        return RedisStorage.from_url(uri, prefix=prefix)
    raise ConfigurationError(
        f"LOCKOUT_STORAGE_URI has an unknown scheme {scheme!r}; use one of"
        f" memory, {', '.join(sorted(_REDIS_SCHEMES))}."
    )


def storage_from_client(client: object, *, prefix: str = "lockout") -> Storage:
    """Wrap a Redis-compatible client: ``redis.Redis``, ``RedisCluster``, a
    Sentinel master, ``FlaskRedis``, valkey's client or fakeredis.

    :raises TypeError: when ``client`` does not speak redis-py's interface.

    >>> import redis
    >>> type(storage_from_client(redis.Redis())).__name__
    'RedisStorage'
    """
    if isinstance(client, Storage):
        return client
    if not is_redis_client(client):
        raise TypeError(
            f"Expected a Redis client (redis.Redis, RedisCluster, FlaskRedis,"
            f" valkey.Valkey), not {type(client).__name__}."
        )
    return RedisStorage(client, prefix=prefix)


def as_storage(obj: object) -> Storage:
    """Accept a :class:`Storage`, a storage URI or a Redis client."""
    if isinstance(obj, Storage):
        return obj
    if isinstance(obj, str):
        return storage_from_uri(obj)
    return storage_from_client(obj)
