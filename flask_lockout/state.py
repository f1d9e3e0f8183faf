"""Per-app state, its one lookup, signal sending and the local refusal cache.

The decorators, the attempts, the CLI and the extension import this
module; none of them imports another.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from flask import current_app, has_request_context, request

from . import signals
from .client_ip import current_client_ip
from .config import Settings
from .errors import StorageError
from .events import EventLog
from .keys import split_key
from .metrics import Metrics
from .policy import whole_seconds
from .request_state import request_state
from .storage.base import FullStorage
from .storage.fallback import FallbackStorage
from .surge import SurgeRules, SurgeState

logger = logging.getLogger("flask_lockout")

#: Known refusals remembered per process, at most.
LOCAL_CACHE_MAX_KEYS = 10_000


class RefusalCache:
    """Keys known to be refused (locked, or over a limit), so hammering one
    costs no storage round trip.

    An entry lives until the refusal ends but at most ``seconds``, so a
    reset made elsewhere takes effect here within that time.
    """

    def __init__(
        self, seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.seconds = seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, float]] = {}

    def __bool__(self) -> bool:
        """False while no refusal is known: nothing to look up."""
        return bool(self._entries)

    def remember(self, key: str, retry_after: float) -> None:
        if self.seconds <= 0 or retry_after <= 0:
            return
        now = self.clock()
        with self._lock:
            if len(self._entries) >= LOCAL_CACHE_MAX_KEYS:
                self._entries.pop(next(iter(self._entries)))
            self._entries[key] = (
                now + min(self.seconds, retry_after),
                now + retry_after,
            )

    def retry_after(self, key: str) -> int:
        """Whole seconds left on a cached refusal, or 0 when unknown."""
        entry = self._entries.get(key)
        if entry is None:
            return 0
        now = self.clock()
        if entry[0] <= now:
            with self._lock:
                self._entries.pop(key, None)
            return 0
        return whole_seconds(entry[1] - now)

    def forget(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class AppState:
    """What one app's Lockout needs per request: ``app.extensions["lockout"]``."""

    def __init__(
        self,
        extension: Any,
        settings: Settings,
        storage: FullStorage,
        device_cookies: bool,
        metrics: Metrics | None = None,
    ) -> None:
        self.extension = extension
        self.settings = settings
        self.storage = storage
        self.events = EventLog(storage, settings.events_max)
        #: Prometheus counters, with ``LOCKOUT_METRICS``.
        self.metrics = metrics
        #: ``LOCKOUT_DEVICE_COOKIES``, resolved against the app's SECRET_KEY.
        self.device_cookies = device_cookies
        self.refusals = RefusalCache(settings.local_cache_seconds)
        #: Endpoints that have declared a success in this process.
        self.declared_success: set[str] = set()
        #: Attempts per endpoint answered below 400 without a declared
        #: success, up to the count that proves it (attempts.py).
        self.undeclared_answers: dict[str, int] = {}
        #: (endpoint, message) pairs already logged.
        self.warned_undeclared: set[tuple[str, str]] = set()
        #: Status codes with no ``lockout/<code>.html`` template in the app.
        self.missing_templates: set[int] = set()
        surge = settings.surge
        self.surge_rules = SurgeRules(
            surge.min_failures, surge.factor, surge.cooldown_seconds
        )
        #: Scopes this process last saw under a surge, and until when (its
        #: own clock) it believes so without a new answer.
        self._surges: dict[str, float] = {}

    @property
    def fallback_active(self) -> bool:
        storage = self.storage
        return isinstance(storage, FallbackStorage) and storage.degraded

    def record(self, kind: str, key: str | None, retry_after: int = 0) -> None:
        """Log an event. On Redis it is written after the response is sent,
        in one pipelined call, so it never delays a decision or a refusal."""
        in_request = has_request_context()
        self.events.record(
            kind,
            key,
            endpoint=request.endpoint if in_request else None,
            client_ip=current_client_ip() if in_request else None,
            retry_after=retry_after,
            defer=in_request,
        )
        if in_request and self.events.shared:
            request_state()["flush"] = True  # attempts.settle_on_response sends them

    def forget(self, key: str, event: str) -> None:
        """Forget ``key`` entirely (lock, failures, rate limits) and log it as
        ``event``: ``reset`` from the manual API and the CLI, ``unlocked``
        from the dashboard or an unlock token.

        :raises StorageError: when storage fails: nothing to fall back to.
        """
        self.refusals.forget(key)
        self.refusals.forget(f"rl:{key}")
        self.storage.lockout_reset(key)
        self.storage.rate_limit_reset(key)
        self.record(event, key)
        send(signals.lockout_reset, key)

    def unlock(self, key: str) -> None:
        """End ``key``'s lock for its owner (an unlock token), keeping its
        probation: a token mailed to the wrong hands buys one guess, not a
        fresh budget."""
        self.refusals.forget(key)
        self.storage.lockout_unlock(key, self.settings.policy_of(key))
        self.record("unlocked", key)
        send(signals.lockout_reset, key)

    def surge_believed(self, scope: str) -> bool:
        """True while the last decision this process made on ``scope`` saw
        a surge (and it has not run out since)."""
        until = self._surges.get(scope)
        return until is not None and time.monotonic() < until

    def surge_changed(self, scope: str, seen: SurgeState) -> None:
        """Remember what a decision saw of ``scope``'s surge; its start or end
        is signalled, logged and counted once, by the process that saw it."""
        if seen.active:
            self._surges[scope] = time.monotonic() + seen.seconds_left
        else:
            self._surges.pop(scope, None)
        if not seen.event:
            return
        kind = f"surge_{seen.event}"
        if self.metrics is not None:
            self.metrics.surge(scope, seen.active)
        self.record(kind, scope)
        logger.warning(
            "Flask-Lockout: scope %r %s a surge (%d failures this minute,"
            " threshold %d).",
            scope,
            "is under" if seen.active else "is no longer under",
            seen.failures,
            seen.threshold,
        )
        signal = signals.surge_started if seen.active else signals.surge_ended
        if signal.receivers:
            app = current_app._get_current_object()  # type: ignore[attr-defined]
            signal.send(
                app,
                scope=scope,
                failures_per_minute=seen.failures,
                threshold=seen.threshold,
            )

    def decided(self, decision: str) -> None:
        """Count a decision, with ``LOCKOUT_METRICS``."""
        if self.metrics is not None:
            self.metrics.decision(request.endpoint, decision)

    def storage_failed_once(self, error: StorageError) -> None:
        """Every failed storage call, for the error counter."""
        if self.metrics is not None:
            self.metrics.storage_error()

    def storage_changed(self, error: StorageError | None) -> None:
        """One log line, one event and one signal per transition, not per
        request."""
        mode = self.settings.fail_mode
        if self.metrics is not None:
            self.metrics.fallback(error is not None)
        self.record("storage_error" if error is not None else "storage_recovered", None)
        if error is not None:
            logger.warning(
                "Flask-Lockout lost its storage (%s). LOCKOUT_FAIL_MODE=%r: %s"
                " Retrying every %g s.",
                error,
                mode,
                _MODE_WORDS[mode],
                self.settings.storage_retry_seconds,
            )
            send(signals.storage_error, None, error=error)
        else:
            logger.warning("Flask-Lockout has its storage back.")
            send(signals.storage_recovered, None)


_MODE_WORDS = {
    "memory": "each process now decides from its own memory, with the same policy.",
    "open": "requests now pass UNGUARDED.",
    "closed": "requests are now refused with 503.",
}


def current_state() -> AppState:
    """The current app's state.

    :raises RuntimeError: saying what to do, when the app has no Lockout.
    """
    state = current_app.extensions.get("lockout")
    if not isinstance(state, AppState):
        raise RuntimeError(
            "Flask-Lockout is not set up on this app: call lockout.init_app(app)"
            " (or Lockout(app)) before handling requests."
        )
    return state


def request_data(key: str | None) -> dict[str, Any]:
    """The keyword data every signal carries."""
    parts = split_key(key) if key else None
    in_request = has_request_context()
    return {
        "endpoint": request.endpoint if in_request else None,
        "key_type": parts[1] if parts else None,
        "key": key,
        "client_ip": current_client_ip() if in_request else None,
    }


def send(signal: Any, key: str | None, **extra: Any) -> None:
    """Send ``signal`` with the app as sender, if anybody listens."""
    if not signal.receivers:
        return  # nobody listens: skip building the payload on the hot path
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    signal.send(app, **request_data(key), **extra)
