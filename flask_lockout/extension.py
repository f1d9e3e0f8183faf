"""The Flask extension: ``Lockout(app)`` / ``init_app`` and the manual API."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Blueprint, Flask, current_app, g, has_request_context, request
from werkzeug.wrappers import Response

from . import signals
from .client_ip import current_client_ip, resolve_client_ip
from .config import DEFAULTS, Settings
from .errors import ConfigurationError, StorageError, StorageOutage
from .headers import stamp_under
from .headers import static_blueprint as _static_blueprint
from .keys import KeySpec
from .limits import Limit
from .lockout import LoginLockout
from .storage import Storage, storage_from_client, storage_from_uri
from .throttle import OUTAGE_RETRY_AFTER, OutageLog
from .tokens import consume_opaque_token, issue_opaque_token

if TYPE_CHECKING:
    from .storage.base import RateLimitResult

logger = logging.getLogger("flask_lockout")

F = TypeVar("F", bound=Callable[..., Any])

#: Known-locked keys remembered per process, at most.
LOCAL_CACHE_MAX_KEYS = 10_000


class LockedCache:
    """Keys known to be locked, so hammering one costs no storage round trip.

    An entry lives until the lock ends but at most ``seconds``, so a reset
    made elsewhere takes effect here within that time.
    """

    def __init__(
        self, seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.seconds = seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, float]] = {}

    def remember(self, key: str, retry_after: int) -> None:
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
        """Whole seconds left on a cached lock, or 0 when unknown."""
        entry = self._entries.get(key)
        if entry is None:
            return 0
        now = self.clock()
        if entry[0] <= now:
            with self._lock:
                self._entries.pop(key, None)
            return 0
        return max(1, math.ceil(entry[1] - now))

    def forget(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class AppState:
    """What one app's Lockout needs per request: ``app.extensions["lockout"]``."""

    def __init__(
        self, extension: Lockout, settings: Settings, storage: Storage
    ) -> None:
        self.extension = extension
        self.settings = settings
        self.storage = storage
        self.engine = LoginLockout(settings.policy, storage=storage)
        self.locked = LockedCache(settings.local_cache_seconds)
        self._outages = OutageLog()

    def storage_failed(self, error: StorageError, key: str | None = None) -> None:
        """Report an outage; raise the 503 when failing closed."""
        self._outages.warn("Lockout", error, self.settings.fail_open)
        send(signals.storage_error, key, error=error)
        if not self.settings.fail_open:
            raise StorageOutage(OUTAGE_RETRY_AFTER) from error


def request_data(key: str | None) -> dict[str, Any]:
    """The keyword data every signal carries."""
    key_type = key.split(":")[1] if key and key.count(":") >= 2 else None
    in_request = has_request_context()
    return {
        "endpoint": request.endpoint if in_request else None,
        "key_type": key_type,
        "key": key,
        "client_ip": current_client_ip() if in_request else None,
    }


def send(signal: Any, key: str | None, **extra: Any) -> None:
    if not signal.receivers:
        return  # nobody listens: skip building the payload on the hot path
    signal.send(current_app._get_current_object(), **request_data(key), **extra)  # type: ignore[attr-defined]


def _state() -> AppState:
    state = current_app.extensions.get("lockout")
    if not isinstance(state, AppState):
        raise RuntimeError(
            "Flask-Lockout is not set up on this app: call lockout.init_app(app)"
            " (or Lockout(app)) before handling requests."
        )
    return state


class Lockout:
    """Brute-force protection for a Flask app.

    :param app: set up this app right away; or call :meth:`init_app` later.
    :param storage: a Redis client (``redis.Redis``, ``RedisCluster``,
        ``FlaskRedis``, valkey's) or a store, used instead of
        ``LOCKOUT_STORAGE_URI``.

    One ``Lockout`` may serve several apps; each keeps its own settings and
    storage in ``app.extensions["lockout"]``. ::

        lockout = Lockout()

        def create_app():
            app = Flask(__name__)
            app.config.from_prefixed_env()
            lockout.init_app(app)
            return app
    """

    def __init__(self, app: Flask | None = None, *, storage: object = None) -> None:
        self._storage = storage
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Read and check the ``LOCKOUT_*`` settings and attach to ``app``.

        :raises ConfigurationError: naming the key of a bad setting.
        :raises RuntimeError: when ``app`` already has a Lockout.
        """
        if "lockout" in app.extensions:
            raise RuntimeError("A Lockout instance is already registered on this app.")
        settings = Settings.from_config(app.config)
        if settings.device_cookies and not app.config.get("SECRET_KEY"):
            raise ConfigurationError(
                "LOCKOUT_DEVICE_COOKIES needs the app's SECRET_KEY to sign the cookies."
            )
        for key, value in DEFAULTS.items():
            app.config.setdefault(key, value)
        if isinstance(self._storage, Storage):
            storage = self._storage
        elif self._storage is not None:
            storage = storage_from_client(self._storage, prefix=settings.key_prefix)
        else:
            storage = storage_from_uri(
                settings.storage_uri,
                prefix=settings.key_prefix,
                max_keys=settings.memory_max_keys,
            )
        app.extensions["lockout"] = AppState(self, settings, storage)
        if settings.harden_app_static and app.static_url_path:
            stamp_under(app, app.static_url_path)
        app.before_request(resolve_client_ip)
        app.after_request(_add_rate_limit_headers)
        from .cli import cli

        app.cli.add_command(cli)

    # -- decorators -----------------------------------------------------------

    def throttled(
        self,
        limit: str | Limit | Sequence[Limit] | None = None,
        by: KeySpec | Sequence[KeySpec] = "ip",
        scope: str | None = None,
        exempt_when: Callable[[], bool] | None = None,
    ) -> Callable[[F], F]:
        """Rate-limit a view in a sliding window; see :func:`decorators.throttled`."""
        from .decorators import throttled

        return throttled(limit, by=by, scope=scope, exempt_when=exempt_when)

    def lockout_on_failure(
        self,
        by: KeySpec | Sequence[KeySpec] = ("ip", "form:email"),
        failure: Callable[[Response], bool] | None = None,
        *,
        success: Callable[[Response], bool] | None = None,
        scope: str | None = None,
    ) -> Callable[[F], F]:
        """Lock keys out after failures; see :func:`decorators.lockout_on_failure`."""
        from .decorators import lockout_on_failure

        return lockout_on_failure(by, failure, success=success, scope=scope)

    def static_blueprint(
        self, name: str, static_folder: str, url_prefix: str
    ) -> Blueprint:
        """A blueprint serving ``static_folder`` at ``url_prefix`` with
        ``DEFAULT_STATIC_SECURITY_HEADERS`` (merged with
        ``LOCKOUT_STATIC_SECURITY_HEADERS``) on every response, 404s included."""
        return _static_blueprint(name, static_folder, url_prefix)

    # -- single-use tokens, in an app context -------------------------------------

    def issue_token(self, subject: str, ttl_seconds: float) -> str:
        """Store a single-use token for ``subject`` (a user id, say); returns
        the plaintext to send. Only its SHA-256 is stored, with the TTL.

        :raises StorageOutage: when storage fails: 503, whatever
            ``LOCKOUT_FAIL_OPEN`` says, since no token can be checked then.
        """
        state = _state()
        try:
            return issue_opaque_token(state.storage, subject, ttl_seconds)
        except StorageError as exc:
            raise _token_outage(state, exc) from exc

    def consume_token(self, plaintext: object) -> str | None:
        """Use a token once: its subject, or None when unknown, expired,
        malformed or used. Of many concurrent uses exactly one wins.

        :raises StorageOutage: when storage fails (503).
        """
        state = _state()
        try:
            return consume_opaque_token(state.storage, plaintext)
        except StorageError as exc:
            raise _token_outage(state, exc) from exc

    # -- manual API, on logical keys, in an app context -------------------------

    def is_locked(self, key: str) -> tuple[bool, int]:
        """``(locked, retry_after)``; ``(False, 0)`` when storage fails open."""
        state = _state()
        cached = state.locked.retry_after(key)
        if cached:
            return True, cached
        try:
            return state.engine.is_locked(key)
        except StorageError as exc:
            state.storage_failed(exc, key)
            return False, 0

    def record_failure(self, key: str) -> tuple[bool, int]:
        """Count a failure on ``key``; returns ``(locked, retry_after)``."""
        state = _state()
        try:
            locked, retry_after = state.engine.record_failure(key)
        except StorageError as exc:
            state.storage_failed(exc, key)
            return False, 0
        send(signals.failure_recorded, key, retry_after=retry_after)
        if locked:
            state.locked.remember(key, retry_after)
            send(signals.locked_out, key, retry_after=retry_after)
        return locked, retry_after

    def record_success(self, key: str) -> None:
        """Clear every failure and lock of ``key``."""
        state = _state()
        state.locked.forget(key)
        try:
            state.engine.record_success(key)
        except StorageError as exc:
            state.storage_failed(exc, key)
            return
        send(signals.lockout_reset, key)

    def reset(self, key: str | None = None) -> None:
        """Forget ``key`` entirely: lock, failures, attempts and rate limits.
        With no key, forget every key under the prefix (between tests, say),
        including the locks this process remembers.

        :raises StorageError: when storage fails (an administrative action
            has nothing to fail open to).
        """
        state = _state()
        if key is None:
            state.locked.clear()
            state.storage.clear()
            return
        state.locked.forget(key)
        state.storage.lockout_reset(key)
        state.storage.rate_limit_reset(key)
        send(signals.lockout_reset, key)


def _token_outage(state: AppState, error: StorageError) -> StorageOutage:
    try:
        state.storage_failed(error)
    except StorageOutage as outage:
        return outage
    return StorageOutage(OUTAGE_RETRY_AFTER)


def _add_rate_limit_headers(response: Response) -> Response:
    result: RateLimitResult | None = g.get("_lockout_rate_limit")
    if result is None:
        return response
    state = current_app.extensions.get("lockout")
    if isinstance(state, AppState) and state.settings.headers_enabled:
        reset = result.retry_after if not result.allowed else result.reset_after
        response.headers["RateLimit-Limit"] = str(result.limit)
        response.headers["RateLimit-Remaining"] = str(result.remaining)
        response.headers["RateLimit-Reset"] = str(max(0, math.ceil(reset)))
    return response
