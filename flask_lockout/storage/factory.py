"""Storage from a URI (a scheme registry) or from a client object."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import cast

from ..errors import ConfigurationError
from .base import FullStorage, Storage
from .clients import check_uri, is_redis_client, missing_package
from .memory import DEFAULT_MAX_KEYS, MemoryStorage
from .redis import RedisStorage

Clock = Callable[[], float]


def _memory(uri: str, prefix: str, max_keys: int, clock: Clock | None) -> FullStorage:
    if clock is None:
        return MemoryStorage(max_keys=max_keys, prefix=prefix)
    return MemoryStorage(clock=clock, max_keys=max_keys, prefix=prefix)


def _redis(uri: str, prefix: str, max_keys: int, clock: Clock | None) -> FullStorage:
    # Connecting waits for the first request; a missing client package must
    # not: it fails here, at init_app, with the command that fixes it.
    package = "valkey" if uri.lower().startswith("valkey") else "redis"
    if importlib.util.find_spec(package) is None:
        raise ConfigurationError(missing_package(package, uri))
    # Checked whole now, or every request would fail on it.
    check_uri(uri)
    return RedisStorage.from_url(uri, prefix=prefix)


#: URI scheme -> builder. A new backend is one module and one line here.
SCHEMES: dict[str, Callable[[str, str, int, Clock | None], FullStorage]] = {
    "memory": _memory,
    **dict.fromkeys(
        (
            "redis",
            "rediss",
            "unix",
            "redis+cluster",
            "valkey",
            "valkeys",
            "valkey+cluster",
        ),
        _redis,
    ),
}


def storage_from_uri(
    uri: str,
    *,
    prefix: str = "lockout",
    max_keys: int = DEFAULT_MAX_KEYS,
    clock: Clock | None = None,
) -> FullStorage:
    """Build storage from a URI, as ``LOCKOUT_STORAGE_URI`` does.

    ``memory://`` (the default), ``redis://``, ``rediss://``, ``unix://``,
    ``redis+cluster://host:port,host:port``, ``valkey://`` and ``valkeys://``.
    Redis clients connect on first use, so building one never fails because
    Redis is down.

    :param max_keys: bound of a memory store.
    :param clock: clock of a memory store (Redis uses its server time).
    :raises ConfigurationError: for an unknown scheme, or a URI no client
        could connect with (a host, a port from 1 to 65535, a numeric
        database, Cluster nodes as ``host:port``), naming
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
    build = SCHEMES.get(scheme)
    if build is None:
        raise ConfigurationError(
            f"LOCKOUT_STORAGE_URI has an unknown scheme {scheme!r}; use one of"
            f" {', '.join(sorted(SCHEMES))}."
        )
    return build(uri, prefix, max_keys, clock)


def storage_from_client(client: object, *, prefix: str = "lockout") -> FullStorage:
    """Wrap a Redis-compatible client: ``redis.Redis``, ``RedisCluster``, a
    Sentinel master, ``FlaskRedis``, valkey's client or fakeredis.

    :raises TypeError: when ``client`` does not speak redis-py's interface.

    >>> import redis
    >>> type(storage_from_client(redis.Redis())).__name__
    'RedisStorage'
    """
    if isinstance(client, Storage):
        return cast(FullStorage, client)
    if not is_redis_client(client):
        raise TypeError(
            f"Expected a Redis client (redis.Redis, RedisCluster, FlaskRedis,"
            f" valkey.Valkey), not {type(client).__name__}."
        )
    return RedisStorage(client, prefix=prefix)


def as_storage(obj: object) -> FullStorage:
    """Accept a :class:`Storage`, a storage URI or a Redis client."""
    if isinstance(obj, Storage):
        return cast(FullStorage, obj)
    if isinstance(obj, str):
        return storage_from_uri(obj)
    return storage_from_client(obj)
