"""Redis and Valkey storage: one Lua script call per decision, server time.

Works with ``redis.Redis``, ``redis.cluster.RedisCluster``, a Sentinel
master, a flask-redis ``FlaskRedis`` and valkey's clients, which all share
redis-py's interface. Requires ``pip install Flask-Lockout[redis]``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any

from ..errors import StorageError, StorageUnavailable
from ..limits import Limit, RateLimitResult
from ..policy import (
    MAX_SPELLINGS,
    LockoutConfig,
    LockState,
    Outcome,
    Reservation,
)
from ..surge import SurgeRules, SurgeState
from .base import (
    AttemptAnswer,
    AttemptAsk,
    AttemptKey,
    Settlement,
    Storage,
    SurgeAsk,
    ThrottleCount,
    attempt_in_steps,
)
from .clients import (
    can_keep_connections,
    client_errors,
    cluster_client,
    health_report,
    is_flask_redis,
    is_redis_client,
    redis_client,
    response_error,
    valkey_client,
)
from .kept import KeptConnections
from .scripts import (
    SCRIPTS,
    answering,
    integers,
    is_noscript,
    key_args,
    load_script,
    ms,
    parse_reservations,
    rate_limit_result,
    receipted,
    rules_args,
    schedule_args,
    surge_state,
)


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


class RedisStorage(Storage):
    """Storage on Redis or Valkey, shared by every worker and host.

    :param client: a client object, or a zero-argument callable returning one
        (called on first use, so the app starts while Redis is down).
    :param prefix: prefix of every key.

    Every decision is one ``EVALSHA`` of a script loaded once (reloaded on
    ``NOSCRIPT``); the script reads ``TIME``, so hosts with skewed clocks
    agree; all keys of a decision share one hash tag, so Redis Cluster works;
    and every key gets a TTL.

    >>> storage = RedisStorage.from_url("redis://127.0.0.1:6379/0")  # no I/O yet
    >>> storage.storage_key("login:email:alice@example.com", "lock")
    'lockout:{login:email:alice@example.com}:lock'
    """

    def __init__(self, client: Any, *, prefix: str = "lockout") -> None:
        self.prefix = prefix
        self._source = client
        self._client: Any = None
        self._scripts: dict[str, Any] = {}
        self._connect_lock = threading.Lock()
        # One object serves every ``with``: a generator-based context
        # manager would cost each decision a generator.
        self._translation = _TranslatedErrors(*client_errors())
        self._kept: tuple[Any, KeptConnections | None] | None = None
        self._cluster: tuple[Any, bool] | None = None

    @classmethod
    def from_url(cls, uri: str, *, prefix: str = "lockout") -> RedisStorage:
        """Build from ``redis://``, ``rediss://``, ``unix://``, ``valkey://``,
        ``valkeys://`` or ``redis+cluster://host:port,host:port`` URIs.

        Query parameters (``?socket_timeout=2``) override the short defaults.
        """
        scheme = uri.split("://", 1)[0].lower()
        if scheme in ("redis+cluster", "valkey+cluster"):
            return cls(lambda: cluster_client(uri), prefix=prefix)
        if scheme in ("valkey", "valkeys"):
            return cls(lambda: valkey_client(uri), prefix=prefix)
        return cls(lambda: redis_client(uri), prefix=prefix)

    @property
    def client(self) -> Any:
        """The client, created (or unwrapped from flask-redis) on first use."""
        if self._client is None:
            with self._connect_lock, self._translate_errors():
                if self._client is None:
                    self._client = self._resolve_client()
        return self._client

    def _resolve_client(self) -> Any:
        source = self._source
        if is_flask_redis(source):
            client = source._redis_client
            if client is None:
                raise StorageError(
                    "The FlaskRedis client has no connection yet: call its"
                    " init_app(app) before the first request."
                )
            return client
        if callable(source) and not is_redis_client(source):
            return source()
        return source

    def _translate_errors(self) -> _TranslatedErrors:
        """A ``with`` block whose client errors come out as ours."""
        return self._translation

    def _script(self, name: str) -> Any:
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = self.client.register_script(
                load_script(name)
            )
        return script

    def _run(self, name: str, keys: Sequence[str], args: Sequence[object]) -> Any:
        client = self.client
        with self._translate_errors():
            return self._script(name)(keys=list(keys), args=list(args), client=client)

    def _run_many(
        self,
        calls: Sequence[tuple[str, Sequence[str], Sequence[object]]],
        replayable: bool = True,
    ) -> list[Any]:
        """Several script calls ``(script, keys, args)`` in one round trip (a
        pipeline, not a transaction: each call is atomic on its own keys,
        which may live in different Cluster slots). Calls that must not run
        twice (give-backs) are not ``replayable``."""
        client = self.client
        # Cluster clients refuse scripts in pipelines: one call per key there.
        if self._on_cluster(client):
            return [self._run(name, keys, args) for name, keys, args in calls]
        with self._translate_errors():
            results = self._send(client, calls, replayable)
            # A script flush can race the reload; a few tries outlast it.
            for _ in range(3):
                # Only the calls the server had no script for did not run:
                # load those and send them again, never the others twice.
                todo = [i for i, result in enumerate(results) if is_noscript(result)]
                if not todo:
                    break
                for name in {calls[i][0] for i in todo}:
                    client.script_load(self._script(name).script)
                again = self._send(client, [calls[i] for i in todo], replayable)
                for i, result in zip(todo, again, strict=True):
                    results[i] = result
            for result in results:
                if isinstance(result, Exception):
                    raise result
            return results

    def _send(
        self,
        client: Any,
        calls: Sequence[tuple[str, Sequence[str], Sequence[object]]],
        replayable: bool = True,
    ) -> list[Any]:
        """EVALSHA every call in one write and read each reply (or the error
        it answered)."""
        commands = [
            ("EVALSHA", self._script(name).sha, len(keys), *keys, *args)
            for name, keys, args in calls
        ]
        kept = self._kept_connections(client)
        if kept is not None:
            return kept.call(commands, replayable)
        pipe = client.pipeline(transaction=False)
        for _, *parts in commands:
            pipe.evalsha(*parts)
        return list(pipe.execute(raise_on_error=False))

    def _on_cluster(self, client: Any) -> bool:
        """True for a Cluster client (looked up once, not per decision)."""
        known = self._cluster
        if known is None or known[0] is not client:
            known = self._cluster = (client, hasattr(client, "nodes_manager"))
        return known[1]

    def _kept_connections(self, client: Any) -> KeptConnections | None:
        """Connections of ``client`` kept between decisions; None for
        clients that keep their own path (Sentinel, Cluster, ...)."""
        kept = self._kept
        if kept is None or kept[0] is not client:
            # One set per client: a second would strand the first's.
            with self._connect_lock:
                kept = self._kept
                if kept is None or kept[0] is not client:
                    connections = None
                    if can_keep_connections(client):
                        connections = KeptConnections(
                            client.connection_pool, response_error(client)
                        )
                    kept = self._kept = (client, connections)
        return kept[1]

    def close(self) -> None:
        """Give the kept connections back to the client's pool."""
        kept = self._kept
        if kept is not None and kept[1] is not None:
            kept[1].close()

    # -- login lockout ------------------------------------------------------

    def _lockout_calls(
        self,
        op: str,
        items: Sequence[AttemptKey | Settlement],
        policy: LockoutConfig,
        token: str = "",
        ttl_ms: int = 0,
    ) -> list[tuple[str, list[str], list[object]]]:
        """Script calls deciding ``op`` for ``items`` (with the receipts of
        the attempts they give back): one call for them all, or one per key
        on a Cluster (other slots)."""
        if self._on_cluster(self.client):
            groups = [[item] for item in items]
        else:
            groups = [list(items)] if items else []
        head: list[object] = [
            op,
            token,
            ttl_ms,
            MAX_SPELLINGS,
            *schedule_args(policy),
        ]
        return [
            (
                "lockout",
                [self.storage_key(item.key, "lock") for item in group],
                head + [arg for item in group for arg in key_args(item, policy)],
            )
            for group in groups
        ]

    def _lockout(self, op: str, key: str, policy: LockoutConfig) -> LockState:
        [reply] = self._run_many(self._lockout_calls(op, [AttemptKey(key)], policy))
        with _READING_REPLY:
            locked, retry, failures, number = integers(reply)
        return LockState(bool(locked), retry, failures, number)

    def lockout_reserve_all(
        self,
        attempts: Sequence[AttemptKey],
        policy: LockoutConfig,
        token: str,
        ttl: float,
    ) -> list[Reservation]:
        calls = self._lockout_calls("reserve", attempts, policy, token, max(1, ms(ttl)))
        reservations = []
        for reply in self._run_many(calls):
            with _READING_REPLY:
                numbers, receipts = receipted(reply)
                reservations += parse_reservations(numbers, receipts)
        return answering(attempts, reservations)

    def lockout_settle_all(
        self,
        settlements: Sequence[Settlement],
        policy: LockoutConfig,
        token: str,
        surge: tuple[str, SurgeRules, bool] | None = None,
    ) -> None:
        by_op: dict[str, list[Settlement]] = {}
        for settlement in settlements:
            if settlement.outcome is not Outcome.FAILURE:  # counted when reserved
                by_op.setdefault(settlement.outcome.value, []).append(settlement)
        calls = [
            call
            for op, items in by_op.items()
            for call in self._lockout_calls(op, items, policy, token)
        ]
        if surge is not None:
            scope, rules, new_device = surge
            record = self.storage_key(scope, "surge")
            flag = "1" if new_device else "0"
            calls.append(("surge", [record], ["success", *rules_args(rules), flag]))
        if calls:
            # A give-back sent twice would give back twice: never replayed
            # here (the script also ignores a token it has applied).
            self._run_many(calls, replayable=False)

    def lockout_failure(self, key: str, policy: LockoutConfig) -> LockState:
        return self._lockout("failure", key, policy)

    def lockout_status(self, key: str, policy: LockoutConfig) -> LockState:
        return self._lockout("status", key, policy)

    def lockout_unlock(self, key: str, policy: LockoutConfig) -> None:
        self._lockout("unlock", key, policy)

    def lockout_reset(self, key: str) -> None:
        client = self.client
        with self._translate_errors():
            client.delete(self.storage_key(key, "lock"))

    def lockout_keys(self) -> Iterator[str]:
        return self._identifiers("lock")

    def _identifiers(self, kind: str) -> Iterator[str]:
        """The identifiers of every key of ``kind`` under this prefix."""
        client = self.client
        pattern = f"{_glob_escape(self.prefix)}:{{*}}:{kind}"
        with self._translate_errors():
            for found in client.scan_iter(match=pattern, count=500):
                text = found.decode() if isinstance(found, bytes) else str(found)
                yield self.identifier_of(text)

    # -- fixed-window throttle ----------------------------------------------

    def throttle_status(self, key: str) -> ThrottleCount:
        skey = self.storage_key(key, "throttle")
        reply = self._run("throttle", [skey], ["status", 0])
        with _READING_REPLY:
            count, ttl_ms = reply
            return ThrottleCount(int(count), int(ttl_ms) / 1000)

    def throttle_hit(self, key: str, window_seconds: float) -> ThrottleCount:
        skey = self.storage_key(key, "throttle")
        reply = self._run("throttle", [skey], ["hit", max(1, ms(window_seconds))])
        with _READING_REPLY:
            count, ttl_ms = reply
            return ThrottleCount(int(count), int(ttl_ms) / 1000)

    def throttle_reset(self, key: str) -> None:
        client = self.client
        with self._translate_errors():
            client.delete(self.storage_key(key, "throttle"))

    # -- sliding-window rate limit ------------------------------------------

    def rate_limit_hit_many(
        self,
        keys: Sequence[str],
        limits: Sequence[Limit],
        reported: int | None = None,
    ) -> RateLimitResult:
        if len(keys) > 1 and self._on_cluster(self.client):
            # Cluster: keys of different hash tags cannot share a script.
            results = []
            for position, key in enumerate(keys):
                shown = reported is None or position < reported
                found = self.rate_limit_hit_many([key], limits, 1 if shown else 0)
                result = RateLimitResult(
                    *found,
                    found.limit,
                    found.reset_after,
                    found.window + position * len(limits),
                )
                if not result.allowed:
                    return result
                if shown:
                    results.append(result)
            if not results:
                return RateLimitResult(True, 0, 0.0, 0, 0.0, 0)
            return min(results, key=lambda r: r.remaining)
        [reply] = self._run_many([self._rate_limit_call(keys, limits, reported)])
        with _READING_REPLY:
            return rate_limit_result(integers(reply))

    def _rate_limit_call(
        self,
        keys: Sequence[str],
        limits: Sequence[Limit],
        reported: int | None = None,
    ) -> tuple[str, list[str], list[object]]:
        """One script over every window of every key: all pass or none counts."""
        names: list[str] = []
        shown = len(keys) if reported is None else reported
        args: list[object] = [shown * len(limits)]
        for key in keys:
            for limit in limits:
                names.append(
                    self.storage_key(key, f"rl:{limit.count}/{limit.period_seconds}")
                )
                args += [limit.count, limit.period_seconds * 1000]
        return "ratelimit", names, args

    def lockout_attempt(self, ask: AttemptAsk) -> AttemptAnswer:
        if self._on_cluster(self.client):  # other slots: a call per part
            return attempt_in_steps(self, ask)
        rate_keys: list[str] = []
        rate_args: list[object] = []
        if ask.limit_keys:
            _, rate_keys, rate_args = self._rate_limit_call(
                ask.limit_keys, ask.limits, ask.reported
            )
        surge_keys, surge_args = self._surge_part(ask.surge)
        attempts = ask.attempts
        [(_, lockout_keys, lockout_args)] = self._lockout_calls(
            "reserve", attempts, ask.policy, ask.token, max(1, ms(ask.ttl))
        )
        [reply] = self._run_many(
            [
                (
                    "guard",
                    [*rate_keys, *surge_keys, *lockout_keys],
                    [
                        len(rate_keys),
                        len(rate_args),
                        len(surge_keys),
                        len(surge_args),
                        *rate_args,
                        *surge_args,
                        *lockout_args,
                    ],
                )
            ]
        )
        with _READING_REPLY:
            text = reply.decode("ascii") if isinstance(reply, bytes) else reply
            rate_part, surge_part, lockout_part = text.split("|")
            result = rate_limit_result(integers(rate_part)) if rate_part else None
            state = surge_state(surge_part) if surge_part else None
            if not lockout_part:  # refused before the reservation
                return AttemptAnswer(result, [], state)
            numbers, receipts = receipted(lockout_part)
            reservations = answering(attempts, parse_reservations(numbers, receipts))
            return AttemptAnswer(result, reservations, state)

    def _surge_part(self, surge: SurgeAsk | None) -> tuple[list[str], list[object]]:
        """The guard's surge keys and args (see guard.lua)."""
        if surge is None:
            return [], []
        keys = [self.storage_key(surge.scope, "surge")]
        args: list[object] = [*rules_args(surge.rules)]
        args += ["1" if surge.known_device else "0"]
        args += ["1" if surge.challenge_passed else "0"]
        for key, key_limits in (
            (surge.address_key, surge.address_limits),
            (surge.network_key, surge.network_limits),
        ):
            if key is None:
                args += [0, 0]  # no windows (and none reported)
                continue
            _, names, window_args = self._rate_limit_call([key], key_limits)
            keys += names
            args += [len(names), *window_args]
        return keys, args

    # -- surge defence ----------------------------------------------------------

    def _surge(
        self, op: str, scope: str, rules: SurgeRules, argument: object = ""
    ) -> SurgeState:
        record = self.storage_key(scope, "surge")
        reply = self._run("surge", [record], [op, *rules_args(rules), argument])
        with _READING_REPLY:
            text = reply.decode("ascii") if isinstance(reply, bytes) else reply
            return surge_state(text)

    def surge_check(self, scope: str, rules: SurgeRules, exempt: bool) -> SurgeState:
        return self._surge("check", scope, rules, "1" if exempt else "0")

    def surge_count(
        self, scope: str, rules: SurgeRules, new_device: bool
    ) -> SurgeState:
        return self._surge("count", scope, rules, "1" if new_device else "0")

    def surge_succeeded(self, scope: str, rules: SurgeRules, new_device: bool) -> None:
        self._surge("success", scope, rules, "1" if new_device else "0")

    def surge_status(self, scope: str, rules: SurgeRules) -> SurgeState:
        return self._surge("status", scope, rules)

    def surge_start(self, scope: str, rules: SurgeRules, seconds: float) -> SurgeState:
        return self._surge("start", scope, rules, max(1, ms(seconds)))

    def surge_end(self, scope: str, rules: SurgeRules) -> SurgeState:
        return self._surge("end", scope, rules)

    def surge_scopes(self) -> Iterator[str]:
        return self._identifiers("surge")

    def rate_limit_reset(self, key: str | None = None) -> None:
        if key is None:
            pattern = f"{_glob_escape(self.prefix)}:{{*}}:rl:*"
        else:
            pattern = _glob_escape(self.storage_key(key, "rl:")) + "*"
        self._delete_matching(pattern)

    def token_put(self, token_hash: str, subject: str, ttl: float) -> None:
        client = self.client
        with self._translate_errors():
            client.set(
                self.storage_key(token_hash, "token"), subject, px=max(1, ms(ttl))
            )

    def token_take(self, token_hash: str) -> str | None:
        found = self._run("token", [self.storage_key(token_hash, "token")], [])
        if found is None:
            return None
        if isinstance(found, bytes):
            return found.decode()
        if isinstance(found, str):
            return found
        raise StorageError(f"Redis sent an unexpected reply: {found!r}")

    def clear(self) -> None:
        self._delete_matching(f"{_glob_escape(self.prefix)}:{{*}}:*")

    def _delete_matching(self, pattern: str) -> None:
        client = self.client
        with self._translate_errors():
            batch: list[Any] = []
            for found in client.scan_iter(match=pattern, count=500):
                batch.append(found)
                if len(batch) == 500:
                    self._delete_each(batch)
                    batch = []
            self._delete_each(batch)

    def _delete_each(self, keys: list[Any]) -> None:
        # One key per DEL: the keys may live in different Cluster slots.
        if keys:
            pipe = self.client.pipeline(transaction=False)
            for found in keys:
                pipe.delete(found)
            pipe.execute()

    def ping(self) -> None:
        client = self.client
        with self._translate_errors():
            client.ping()

    def describe(self, deep: bool = False) -> dict[str, object]:
        """The server, and with ``deep`` what a deployment must check: round
        trip, clock offset, scripts, eviction policy, key count."""
        if not deep:
            return {"backend": "redis"}
        client = self.client
        with self._translate_errors():
            return health_report(client, [load_script(name) for name in SCRIPTS])

    def probe(self) -> None:
        """One real decision, through the path every decision takes: a PING
        answers while scripts are refused (NOSCRIPT, OOM, READONLY, an ACL
        without EVALSHA). It counts a failure on a throwaway key whose state
        expires within milliseconds; a read would pass where writes fail."""
        expiring = LockoutConfig(
            max_failures=1_000_000,
            window_seconds=0.001,
            base_lock_seconds=0.001,
            max_lock_seconds=0.001,
            reset_after_seconds=0.001,
        )
        self._lockout("failure", "~probe", expiring)


class _TranslatedErrors:
    """Errors raised inside the block come out as :class:`StorageUnavailable`
    (``unavailable``: unreachable) or :class:`StorageError` (``other``,
    with ``failed`` in front of the message); ours pass as they are."""

    __slots__ = ("unavailable", "other", "failed")

    def __init__(
        self,
        unavailable: tuple[type[BaseException], ...],
        other: tuple[type[BaseException], ...],
        failed: str = "Redis failed",
    ) -> None:
        self.unavailable, self.other, self.failed = unavailable, other, failed

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if error is None or isinstance(error, StorageError):
            return
        if isinstance(error, self.unavailable):
            raise StorageUnavailable(f"Redis is unreachable: {error}") from error
        if isinstance(error, self.other):
            raise StorageError(f"{self.failed}: {error}") from error


#: Around the reading of a script's reply: one of the wrong type or shape
#: (from a faulty proxy or server) is a StorageError, which the fail mode
#: handles, not an exception the app answers with a 500.
_READING_REPLY = _TranslatedErrors(
    (),
    (ValueError, TypeError, AttributeError, IndexError),
    "Redis sent an unexpected reply",
)
