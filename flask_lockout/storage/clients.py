"""Redis, Valkey and Redis Cluster clients built from storage URIs.

Short socket timeouts and a single immediate retry: a hung server must cost
a request a fraction of a second, never hang it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from ..errors import ConfigurationError

#: Socket timeouts, in seconds, for clients built from a URI.
DEFAULT_SOCKET_TIMEOUT = 0.5


def _client_options(extra: dict[str, Any]) -> dict[str, Any]:
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError
    from redis.retry import Retry

    options: dict[str, Any] = {
        "socket_timeout": DEFAULT_SOCKET_TIMEOUT,
        "socket_connect_timeout": DEFAULT_SOCKET_TIMEOUT,
        # One immediate retry replaces a connection a restarted server closed;
        # no retry on timeouts, which would multiply the wait.
        "retry": Retry(NoBackoff(), 1, supported_errors=(ConnectionError,)),
    }
    options.update(extra)
    return options


def redis_client(uri: str) -> Any:
    try:
        import redis
    except ImportError as exc:
        raise ConfigurationError(missing_package("redis", uri)) from exc
    return redis.Redis.from_url(uri, **_client_options({}))


def valkey_client(uri: str) -> Any:
    try:
        import valkey
        from valkey.backoff import NoBackoff
        from valkey.exceptions import ConnectionError
        from valkey.retry import Retry
    except ImportError as exc:
        raise ConfigurationError(missing_package("valkey", uri)) from exc
    return valkey.Valkey.from_url(
        uri,
        socket_timeout=DEFAULT_SOCKET_TIMEOUT,
        socket_connect_timeout=DEFAULT_SOCKET_TIMEOUT,
        retry=Retry(NoBackoff(), 1, supported_errors=(ConnectionError,)),
    )


def cluster_client(uri: str) -> Any:
    try:
        from redis.cluster import ClusterNode, RedisCluster
    except ImportError as exc:
        raise ConfigurationError(missing_package("redis", uri)) from exc
    parts = urlsplit(uri)
    netloc = parts.netloc
    auth: dict[str, Any] = {}
    if "@" in netloc:
        userinfo, netloc = netloc.rsplit("@", 1)
        user, _, password = userinfo.partition(":")
        auth = {
            "username": unquote(user) or None,
            "password": unquote(password) or None,
        }
    nodes = []
    for host_port in netloc.split(","):
        host, _, port = host_port.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigurationError(
                f"LOCKOUT_STORAGE_URI: cluster node {host_port!r} must be host:port."
            )
        nodes.append(ClusterNode(host.strip("[]"), int(port)))  # type: ignore[no-untyped-call]
    options = _client_options(auth)
    retry = options.pop("retry")
    return RedisCluster(startup_nodes=nodes, retry=retry, **options)


def missing_package(package: str, uri: str) -> str:
    return (
        f"LOCKOUT_STORAGE_URI {uri.split('://')[0]}:// needs the {package} package:"
        f' pip install "Flask-Lockout[{package}]"'
    )
