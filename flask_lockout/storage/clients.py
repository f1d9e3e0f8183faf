"""Redis, Valkey and Redis Cluster clients built from storage URIs.

Short socket timeouts and a single immediate retry: a hung server must cost
a request a fraction of a second, never hang it.
"""

from __future__ import annotations

import importlib
import re
import time
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


def client_errors() -> tuple[
    tuple[type[BaseException], ...], tuple[type[BaseException], ...]
]:
    """(errors meaning unreachable, other client errors) of installed clients."""
    unavailable: list[type[BaseException]] = [OSError]
    other: list[type[BaseException]] = []
    try:
        import redis.exceptions as r

        unavailable += [r.ConnectionError, r.TimeoutError, r.ClusterDownError]
        other += [r.RedisError, r.RedisClusterException]
    except ImportError:  # pragma: no cover - valkey-only installs
        pass
    try:
        import valkey.exceptions as v

        unavailable += [v.ConnectionError, v.TimeoutError, v.ClusterDownError]
        other += [v.ValkeyError, v.ValkeyClusterException]
    except ImportError:
        pass
    return tuple(unavailable), tuple(other)


def can_keep_connections(client: Any) -> bool:
    """True for a plain ``redis.Redis`` or ``valkey.Valkey`` on a plain
    connection pool without client-side caching. Sentinel pools find their
    master per connection, blocking pools ration them and cluster clients
    route per key: those keep the client's own pipeline."""
    package = type(client).__module__.split(".", 1)[0]
    if package not in ("redis", "valkey"):
        return False
    module = importlib.import_module(package)
    plain = getattr(module, "Redis", None) or getattr(module, "Valkey", None)
    pool = getattr(client, "connection_pool", None)
    return (
        type(client) is plain
        and type(pool) is module.ConnectionPool
        and getattr(pool, "cache", None) is None
    )


def response_error(client: Any) -> type[Exception]:
    """``ResponseError`` of the package ``client`` comes from."""
    package = type(client).__module__.split(".", 1)[0]
    exceptions = importlib.import_module(f"{package}.exceptions")
    error: type[Exception] = exceptions.ResponseError
    return error


def is_redis_client(obj: object) -> bool:
    """True for objects with redis-py's script interface (FlaskRedis included)."""
    if is_flask_redis(obj):
        return True
    return callable(getattr(obj, "register_script", None)) and callable(
        getattr(obj, "evalsha", None)
    )


def is_flask_redis(obj: object) -> bool:
    return type(obj).__name__ == "FlaskRedis" and hasattr(obj, "provider_class")


def health_report(client: Any, scripts: list[str]) -> dict[str, object]:
    """What ``flask lockout check`` reports of a Redis server: version, round
    trip, clock offset, whether the scripts load, eviction policy, key count,
    and ``warnings``. Raises what the client raises."""
    report: dict[str, object] = {}
    warnings: list[str] = []
    started = time.perf_counter()
    client.ping()
    report["round trip"] = f"{(time.perf_counter() - started) * 1000:.2f} ms"
    info = client.info("server")
    report["backend"] = (
        f"{'valkey' if 'valkey_version' in info else 'redis'}"
        f" {info.get('valkey_version') or info.get('redis_version')}"
    )
    seconds, micros = client.time()
    offset = seconds + micros / 1e6 - time.time()
    report["clock offset"] = f"{offset:+.3f} s (locks use the server's clock)"
    for script in scripts:
        client.script_load(script)
    report["scripts"] = "loaded"
    report["keys in database"] = client.dbsize()
    report["maxmemory-policy"] = policy = _eviction_policy(client)
    if policy not in ("noeviction", "unknown"):
        warnings.append(
            f"maxmemory-policy is {policy}: Redis may evict locks and failure"
            " counts under memory pressure, which unlocks accounts. Give"
            " Flask-Lockout a Redis (or database) with maxmemory-policy"
            " noeviction."
        )
    report["warnings"] = warnings
    return report


def _eviction_policy(client: Any) -> str:
    try:
        found = client.config_get("maxmemory-policy")
    except client_errors()[1]:
        return "unknown"  # CONFIG may be renamed or disabled
    if isinstance(found, dict) and found:
        value = next(iter(found.values()))
        return value.decode() if isinstance(value, bytes) else str(value)
    return "unknown"


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
    nodes = [
        ClusterNode(host, port)  # type: ignore[no-untyped-call]
        for host, port in map(_cluster_node, netloc.split(","))
    ]
    options = _client_options(auth)
    retry = options.pop("retry")
    return RedisCluster(startup_nodes=nodes, retry=retry, **options)


#: Schemes of one server over TCP, and of a Cluster's list of nodes.
_SERVER_SCHEMES = ("redis", "rediss", "valkey", "valkeys")
_CLUSTER_SCHEMES = ("redis+cluster", "valkey+cluster")
_DATABASE = re.compile(r"/?[0-9]*")


def check_uri(uri: str) -> None:
    """Check a Redis, Valkey or Cluster URI whole, without connecting: the
    scheme, a host, a port from 1 to 65535, a numeric database, every
    Cluster node as ``host:port``, and the client's own query options.

    Clients connect on first use, so a URI no client can parse would
    otherwise fail every request instead of the start.

    :raises ConfigurationError: naming ``LOCKOUT_STORAGE_URI`` and the part
        that is wrong (never the password).
    """
    scheme = uri.split("://", 1)[0].lower()
    try:
        parts = urlsplit(uri)
    except ValueError as exc:  # an unclosed IPv6 bracket
        raise _bad_uri(f"cannot be parsed ({exc})") from None
    if scheme in _CLUSTER_SCHEMES:
        for node in parts.netloc.rpartition("@")[2].split(","):
            _cluster_node(node)
        if parts.path.strip("/") not in ("", "0"):
            raise _bad_uri("names a database, which Redis Cluster does not have.")
        return
    if scheme == "unix":
        if not parts.path.strip("/"):
            raise _bad_uri("needs a socket path, as in 'unix:///run/redis.sock'.")
    elif scheme in _SERVER_SCHEMES:
        _check_server(parts.netloc.rpartition("@")[2], parts.hostname)
        if not _DATABASE.fullmatch(parts.path):
            raise _bad_uri(
                f"names the database {unquote(parts.path.lstrip('/'))!r}: a"
                " database is a number, as in 'redis://localhost:6379/0'."
            )
    else:
        raise _bad_uri(f"has the scheme {scheme!r}, which no Redis client reads.")
    _check_query(uri, scheme)


def _check_server(netloc: str, hostname: str | None) -> None:
    """The ``host[:port]`` of a one-server URI (user and password taken off)."""
    if not hostname or any(ch.isspace() for ch in hostname):
        raise _bad_uri("needs a host, as in 'redis://localhost:6379/0'.")
    if netloc.startswith("["):  # [IPv6]:port
        rest = netloc.partition("]")[2]
    else:
        _, colon, port = netloc.partition(":")
        rest = colon + port
    if rest:
        _port(rest[1:] if rest.startswith(":") else rest, netloc)


def _cluster_node(node: str) -> tuple[str, int]:
    """``(host, port)`` of one ``host:port`` of a Cluster URI."""
    host, _, port = node.strip().rpartition(":")
    host = host.strip("[]")
    if not host or not port:
        raise _bad_uri(f"has the cluster node {node!r}: each must be host:port.")
    return host, _port(port, node)


def _port(text: str, where: str) -> int:
    if not (text.isascii() and text.isdigit() and 0 < int(text) < 65536):
        raise _bad_uri(
            f"has the port {text!r} in {where!r}: a port is a number from 1 to 65535."
        )
    return int(text)


def _check_query(uri: str, scheme: str) -> None:
    """The client's own parse of the URI: its query options (``db``,
    ``socket_timeout``...) and what it refuses."""
    package = "valkey" if scheme.startswith("valkey") else "redis"
    try:
        connection = importlib.import_module(f"{package}.connection")
    except ImportError:
        return  # the factory names the missing package
    try:
        connection.parse_url(uri)
    except ValueError as exc:
        raise _bad_uri(f"is refused by the {package} client: {exc}") from None


def _bad_uri(why: str) -> ConfigurationError:
    return ConfigurationError(f"LOCKOUT_STORAGE_URI {why}")


def missing_package(package: str, uri: str) -> str:
    return (
        f"LOCKOUT_STORAGE_URI {uri.split('://')[0]}:// needs the {package} package:"
        f' pip install "Flask-Lockout[{package}]"'
    )
