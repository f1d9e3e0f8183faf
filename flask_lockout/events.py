"""The event log: what happened to which key, newest first.

On memory storage the log is a bounded deque in this process. On Redis it is
one capped list per prefix, ``<prefix>:{events}:log``, shared by every
process: each event is a JSON object pushed to the head, the list trimmed to
``LOCKOUT_EVENTS_MAX`` and given a TTL, all in one pipelined call.

An event log must never break the request it describes: when Redis fails,
the event is kept in this process and written with the next event that
gets through, and reads fall back to what this process saw.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple

from .responses import wait_in_words
from .storage.redis import RedisStorage

logger = logging.getLogger("flask_lockout")

#: The kinds of event recorded.
KINDS = (
    "locked",
    "reset",
    "unlocked",
    "storage_error",
    "storage_recovered",
    "surge_started",
    "surge_ended",
)

#: Identifier and kind of the Redis list: ``<prefix>:{events}:log``. Logical
#: keys always hold two colons, so no account's keys can collide with it.
REDIS_IDENTIFIER = "events"
REDIS_KIND = "log"

#: Seconds the Redis list lives after its last event.
REDIS_TTL_SECONDS = 7 * 86400

#: Events this process keeps while Redis cannot take them, at most.
LOCAL_MAX = 200

#: Longest key or endpoint stored; keys are folded and bounded already, this
#: only caps what a custom key could put in the shared log.
_MAX_TEXT = 512


class EventPage(NamedTuple):
    """Events newest first; ``partial`` when Redis could not be read and
    they are this process's own."""

    events: list[dict[str, Any]]
    partial: bool


def encode_event(
    kind: str,
    key: str | None,
    *,
    when: float,
    endpoint: str | None = None,
    client_ip: str | None = None,
    retry_after: int = 0,
) -> dict[str, Any]:
    """One event as stored: the dict :meth:`EventLog.recent` returns.

    >>> encode_event("locked", "login:ip:203.0.113.7", when=1.5, retry_after=60)
    ... # doctest: +NORMALIZE_WHITESPACE
    {'time': 1.5, 'kind': 'locked', 'key': 'login:ip:203.0.113.7',
     'endpoint': None, 'client_ip': None, 'retry_after': 60}
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}.")
    return {
        "time": round(float(when), 3),
        "kind": kind,
        "key": _bounded(key),
        "endpoint": _bounded(endpoint),
        "client_ip": _bounded(client_ip),
        "retry_after": max(0, int(retry_after)),
    }


def decode_event(raw: object) -> dict[str, Any] | None:
    """An event read back from Redis (written by :class:`EventLog` or by a
    Lua script); None for anything that is not one."""
    try:
        data = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or data.get("kind") not in KINDS:
        return None
    when, retry_after = data.get("time"), data.get("retry_after")
    return {
        "time": float(when) if isinstance(when, int | float) else 0.0,
        "kind": data["kind"],
        "key": _text_or_none(data.get("key")),
        "endpoint": _text_or_none(data.get("endpoint")),
        "client_ip": _text_or_none(data.get("client_ip")),
        "retry_after": int(retry_after) if isinstance(retry_after, int | float) else 0,
    }


def _bounded(text: str | None) -> str | None:
    return None if text is None else str(text)[:_MAX_TEXT]


def _text_or_none(value: object) -> str | None:
    # A Lua script's cjson writes a missing field as {} or leaves it out.
    return value if isinstance(value, str) and value else None


class EventLog:
    """The last ``max_events`` events of one app.

    :param storage: the app's store; a :class:`~flask_lockout.RedisStorage`
        (or a fallback store around one) shares the log through Redis, any
        other store keeps it in this process.
    :param max_events: ``LOCKOUT_EVENTS_MAX``.
    :param clock: Unix time, for the ``time`` of each event.

    >>> from flask_lockout import MemoryStorage
    >>> log = EventLog(MemoryStorage(), max_events=2, clock=lambda: 100.0)
    >>> for kind in ("locked", "reset", "unlocked"):
    ...     log.record(kind, "login:ip:203.0.113.7")
    >>> [event["kind"] for event in log.recent()]
    ['unlocked', 'reset']
    """

    def __init__(
        self, storage: object, max_events: int, clock: Callable[[], float] = time.time
    ) -> None:
        if isinstance(max_events, bool) or not isinstance(max_events, int):
            raise ValueError(f"max_events must be a whole number, not {max_events!r}.")
        if max_events < 1:
            raise ValueError(f"max_events must be at least 1, not {max_events}.")
        self.storage = storage
        self.max_events = max_events
        self.clock = clock
        primary = getattr(storage, "primary", storage)
        self._redis = primary if isinstance(primary, RedisStorage) else None
        self._lock = threading.Lock()
        #: Every event of this process on memory; on Redis, the recent ones
        #: of this process, read while Redis is away.
        self._local: deque[dict[str, Any]] = deque(
            maxlen=max_events if self._redis is None else min(max_events, LOCAL_MAX)
        )
        #: Events Redis has not taken yet, oldest first.
        self._pending: deque[dict[str, Any]] = deque(maxlen=min(max_events, LOCAL_MAX))

    @property
    def shared(self) -> bool:
        """True when every process of the app writes to one log (Redis)."""
        return self._redis is not None

    @property
    def redis_key(self) -> str | None:
        """The Redis list, ``<prefix>:{events}:log``; None on memory."""
        if self._redis is None:
            return None
        return self._redis.storage_key(REDIS_IDENTIFIER, REDIS_KIND)

    def record(
        self,
        kind: str,
        key: str | None,
        *,
        endpoint: str | None = None,
        client_ip: str | None = None,
        retry_after: int = 0,
        defer: bool = False,
    ) -> None:
        """Log one event. Never raises for a storage failure.

        :param defer: on Redis, keep the event until :meth:`flush` or the
            next event written, so a caller can send it after the response
            (``response.call_on_close(log.flush)``), off the request's path.
        :raises ValueError: for an unknown ``kind`` (a programming error).
        """
        event = encode_event(
            kind,
            key,
            when=self.clock(),
            endpoint=endpoint,
            client_ip=client_ip,
            retry_after=retry_after,
        )
        with self._lock:
            self._local.append(event)
            if self._redis is None:
                return
            self._pending.append(event)
        if not defer:
            self.flush()

    def flush(self) -> None:
        """Write the events Redis has not taken yet, in one pipelined call.
        Never raises: on failure they wait for the next write."""
        if self._redis is None or getattr(self.storage, "degraded", False):
            # The breaker is open: a write would wait out a socket timeout
            # per event on a frozen server. The first write after recovery
            # carries the waiting events along.
            return
        with self._lock:
            batch = list(self._pending)
            self._pending.clear()
        if not batch:
            return
        try:
            self.queue_and_execute(batch)
        except Exception as exc:  # an event log must never break a request
            logger.debug("Flask-Lockout could not write events to Redis: %s", exc)
            with self._lock:
                # Back ahead of anything recorded meanwhile; when too many
                # wait, the oldest go first.
                self._pending = deque(
                    [*batch, *self._pending], maxlen=self._pending.maxlen
                )

    def queue(self, pipe: Any, events: list[dict[str, Any]]) -> None:
        """Add the commands that log ``events`` (oldest first) to a redis-py
        pipeline, so a caller can send them in a round trip it makes anyway.

        LPUSH, LTRIM and PEXPIRE all name one key: one Cluster slot.
        """
        name = self.redis_key
        if name is None or not events:
            return
        encoded = [json.dumps(event, separators=(",", ":")) for event in events]
        pipe.lpush(name, *encoded)
        pipe.ltrim(name, 0, self.max_events - 1)
        pipe.pexpire(name, REDIS_TTL_SECONDS * 1000)

    def queue_and_execute(self, events: list[dict[str, Any]]) -> None:
        """Write ``events`` in one pipelined call; raises what the client raises."""
        if self._redis is None:
            return
        pipe = self._redis.client.pipeline(transaction=False)
        self.queue(pipe, events)
        pipe.execute()

    def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        """Up to ``limit`` events, newest first. Never raises for a storage
        failure: it answers from this process's events instead."""
        return self.read(limit).events

    def read(self, limit: int = 100) -> EventPage:
        """Like :meth:`recent`, and whether the answer is this process's
        events alone because Redis could not be read."""
        limit = min(max(0, int(limit)), self.max_events)
        with self._lock:
            local = list(self._local)
            pending = list(self._pending)
        own = local[::-1][:limit]
        if self._redis is None or limit == 0:
            return EventPage(own, False)
        if getattr(self.storage, "degraded", False):
            return EventPage(own, True)
        try:
            raw = self._redis.client.lrange(self.redis_key, 0, limit - 1)
        except Exception as exc:  # reads fall back to this process's events
            logger.debug("Flask-Lockout could not read events from Redis: %s", exc)
            return EventPage(own, True)
        shared = [event for event in map(decode_event, raw) if event is not None]
        merged = pending[::-1] + shared
        # Stable: events of one time keep their newest-first order.
        merged.sort(key=lambda event: event["time"], reverse=True)
        return EventPage(merged[:limit], False)


def event_line(event: dict[str, Any], now: float | None = None) -> str:
    """One event as the CLI prints it.

    >>> event_line(encode_event("locked", "login:ip:203.0.113.7", when=0,
    ...     endpoint="login", client_ip="203.0.113.7", retry_after=120), now=30)
    '1970-01-01 00:00:00 UTC (30 seconds ago)  locked  login:ip:203.0.113.7  for 2 minutes  endpoint=login  ip=203.0.113.7'
    """  # noqa: E501
    parts = [
        f"{utc_time(event['time'])} ({ago_in_words(event['time'], now)})",
        event["kind"],
        event["key"] or "-",
    ]
    if event["retry_after"]:
        parts.append(f"for {wait_in_words(event['retry_after'])}")
    if event["endpoint"]:
        parts.append(f"endpoint={event['endpoint']}")
    if event["client_ip"]:
        parts.append(f"ip={event['client_ip']}")
    return "  ".join(parts)


def utc_time(when: float) -> str:
    """``2026-05-01 12:03:04 UTC``."""
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago_in_words(when: float, now: float | None = None) -> str:
    """``"just now"``, ``"3 minutes ago"``: how long ago ``when`` was."""
    elapsed = (time.time() if now is None else now) - when
    if elapsed < 1:
        return "just now"
    # wait_in_words rounds up, which suits a wait; an age reads better floored.
    seconds = int(elapsed)
    if seconds >= 60:
        seconds -= seconds % 60
    if seconds >= 86400 * 2:
        return f"{seconds // 86400} days ago"
    return f"{wait_in_words(seconds)} ago"
