"""The Flask extension: ``Lockout(app)`` / ``init_app`` and the manual API."""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

from flask import Blueprint, Flask, current_app, has_request_context, request
from werkzeug.wrappers import Response

from . import attempts, decorators, signals
from .client_ip import current_client_network
from .config import DEFAULTS, Settings
from .errors import ConfigurationError, Refusal
from .keys import KeySpec, canonical_key, named_scope
from .limits import Limit
from .metrics import Metrics
from .policy import LockState, Outcome
from .request_state import challenge_required
from .responses import add_rate_limit_headers, render_refusal
from .state import AppState, current_state, send
from .static import stamp_under
from .static import static_blueprint as _static_blueprint
from .storage.base import FullStorage, Storage
from .storage.factory import storage_from_client, storage_from_uri
from .storage.fallback import FallbackStorage
from .storage.memory import MemoryStorage
from .surge import SurgeState
from .tokens import (
    consume_opaque_token,
    generate_opaque_token,
    hash_opaque_token,
    issue_opaque_token,
)

#: Unlock tokens are stored under their own names, so that no other token
#: (whatever its subject) can be redeemed as one.
_UNLOCK = "unlock-"

F = TypeVar("F", bound=Callable[..., Any])

logger = logging.getLogger("flask_lockout")

#: Apps on memory storage not yet warned, in this process, that each process
#: of a multi-process server counts on its own. Filled at ``init_app``, so a
#: server that forks after loading the app warns once in every worker.
_UNWARNED: weakref.WeakSet[AppState] = weakref.WeakSet()
_unwarned_lock = threading.Lock()


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
        self._registry: Any = None
        if app is not None:
            self.init_app(app)

    def init_metrics(self, registry: Any) -> None:
        """Register the Prometheus counters on ``registry`` (a
        ``prometheus_client.CollectorRegistry``) instead of the default one;
        call it before :meth:`init_app`. Needs :data:`LOCKOUT_METRICS`."""
        self._registry = registry

    def init_app(self, app: Flask) -> None:
        """Read and check the ``LOCKOUT_*`` settings and attach to ``app``.

        :raises ConfigurationError: naming the key of a bad setting.
        :raises RuntimeError: when ``app`` already has a Lockout.
        """
        if "lockout" in app.extensions:
            raise RuntimeError("A Lockout instance is already registered on this app.")
        settings = Settings.from_config(app.config)
        has_secret = bool(app.config.get("SECRET_KEY"))
        if settings.device_cookies and not has_secret:
            raise ConfigurationError(
                "LOCKOUT_DEVICE_COOKIES needs the app's SECRET_KEY to sign the cookies."
            )
        device_cookies = (
            has_secret if settings.device_cookies is None else settings.device_cookies
        )
        for key, value in DEFAULTS.items():
            app.config.setdefault(key, value)
        metrics = Metrics(self._registry) if settings.metrics else None
        storage = self._build_storage(settings)
        state = AppState(self, settings, storage, device_cookies, metrics)
        if isinstance(storage, FallbackStorage):
            storage.on_change = state.storage_changed
            storage.on_error = state.storage_failed_once
        app.extensions["lockout"] = state
        if isinstance(storage, MemoryStorage) and settings.enabled:
            _UNWARNED.add(state)
        if settings.harden_app_static and app.static_url_path:
            stamp_under(app, app.static_url_path)
        app.after_request(_after_request)
        if settings.app_limits:
            app.before_request(decorators.apply_app_limits)
        # Flask picks the app's own handler for the status code first.
        app.register_error_handler(Refusal, render_refusal)
        attempts.install(app)
        from .cli import cli

        app.cli.add_command(cli)

    def _build_storage(self, settings: Settings) -> FullStorage:
        source = self._storage
        if isinstance(source, Storage):
            store = cast(FullStorage, source)
        elif source is not None:
            store = storage_from_client(source, prefix=settings.key_prefix)
        else:
            store = storage_from_uri(
                settings.storage_uri,
                prefix=settings.key_prefix,
                max_keys=settings.memory_max_keys,
            )
        if not isinstance(store, MemoryStorage | FallbackStorage):
            store = FallbackStorage(
                store,
                mode=settings.fail_mode,
                retry_seconds=settings.storage_retry_seconds,
                memory=MemoryStorage(
                    max_keys=settings.memory_max_keys, prefix=settings.key_prefix
                ),
            )
        memory = store.memory if isinstance(store, FallbackStorage) else store
        if isinstance(memory, MemoryStorage) and memory.network is None:
            # A full store's overflow buckets are per client network.
            memory.network = current_client_network
        return store

    # -- decorators -----------------------------------------------------------

    def throttled(
        self,
        limit: str | Limit | Sequence[Limit] | None = None,
        by: KeySpec | Sequence[KeySpec] = "ip",
        scope: str | None = None,
        exempt_when: Callable[[], bool] | None = None,
    ) -> Callable[[F], F]:
        """Rate-limit a view in a sliding window; see :func:`decorators.throttled`."""
        return decorators.throttled(limit, by=by, scope=scope, exempt_when=exempt_when)

    def lockout_on_failure(
        self,
        by: KeySpec | Sequence[KeySpec] = ("ip", "form:email"),
        failure: attempts.ResponseTest | None = None,
        *,
        success: attempts.ResponseTest | None = None,
        scope: str | None = None,
        challenge: Callable[[], bool] | None = None,
    ) -> Callable[[F], F]:
        """Lock keys out after failures; see
        :func:`decorators.lockout_on_failure`."""
        return decorators.lockout_on_failure(
            by, failure, success=success, scope=scope, challenge=challenge
        )

    def exempt(self, view: F) -> F:
        """Take a view out of ``LOCKOUT_APP_LIMITS``, as Flask-Limiter's
        ``@limiter.exempt`` does."""
        return decorators.exempt(view)

    def succeeded(self) -> None:
        """Inside a guarded view: this attempt authenticated the account.

        It gives the attempt back and forgives the failures typed with the
        same spelling of the account (never those of the ``ip`` keys).
        Flask-Login's ``login_user`` declares it for you.
        """
        attempts.declare(Outcome.SUCCESS)

    def failed(self) -> None:
        """Inside a guarded view: this attempt failed, whatever the response."""
        attempts.declare(Outcome.FAILURE)

    def challenge_required(self) -> bool:
        """True, in a guarded view or its 429 page, when the scope is under a
        surge and this attempt (from a device without a cookie) has not
        passed the view's ``challenge``: show the challenge."""
        return has_request_context() and challenge_required()

    # -- surges ---------------------------------------------------------------

    def surge_active(self, scope: str) -> bool:
        """Whether ``scope`` (a ``@lockout_on_failure`` scope) is under a
        surge, detected or started by an operator."""
        state = current_state()
        return state.storage.surge_status(named_scope(scope), state.surge_rules).active

    def start_surge(self, scope: str, seconds: float = 3600) -> None:
        """Put ``scope`` under a surge for ``seconds``, as if detected.

        :raises RuntimeError: when ``LOCKOUT_SURGE`` is off.
        """
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise ValueError(f"seconds must be a number, not {seconds!r}.")
        if not 0 < seconds <= 86400 * 30:
            raise ValueError(f"seconds must be from 1 to 30 days, not {seconds!r}.")
        state = _surges_on()
        scope = named_scope(scope)
        seen = state.storage.surge_start(scope, state.surge_rules, seconds)
        state.surge_changed(scope, seen)

    def end_surge(self, scope: str) -> None:
        """End ``scope``'s surge now (failures that go on start it again)."""
        state = _surges_on()
        scope = named_scope(scope)
        seen = state.storage.surge_end(scope, state.surge_rules)
        state.surge_changed(scope, seen)

    def surges(self) -> list[tuple[str, SurgeState]]:
        """Every scope of this app's ``@lockout_on_failure`` views that is
        under a surge now, with its state."""
        state = current_state()
        found = []
        for scope in sorted(decorators.guarded_scopes(current_app.view_functions)):
            seen = state.storage.surge_status(scope, state.surge_rules)
            if seen.active:
                found.append((scope, seen))
        return found

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

        :raises StorageError: when storage fails, in every fail mode: no
            token can be checked then.
        """
        return issue_opaque_token(current_state().storage, subject, ttl_seconds)

    def consume_token(self, plaintext: object) -> str | None:
        """Use a token once: its subject, or None when unknown, expired,
        malformed or used. Of many concurrent uses exactly one wins.

        :raises StorageError: when storage fails.
        """
        return consume_opaque_token(current_state().storage, plaintext)

    # -- manual API, on logical keys, in an app context -------------------------

    def is_locked(self, key: str) -> tuple[bool, int]:
        """``(locked, retry_after)`` of ``key``; changes nothing."""
        state = current_state()
        cached = state.refusals.retry_after(key)
        if cached:
            return True, cached
        found = state.storage.lockout_status(key, state.settings.policy_of(key))
        return found.locked, found.retry_after

    def status(self, key: str) -> LockState:
        """``key``'s lock, failures in the window and lock number."""
        state = current_state()
        return state.storage.lockout_status(key, state.settings.policy_of(key))

    def record_failure(self, key: str) -> tuple[bool, int]:
        """Count a failure on ``key``; returns ``(locked, retry_after)``."""
        state = current_state()
        found = state.storage.lockout_failure(key, state.settings.policy_of(key))
        send(signals.failure_recorded, key, retry_after=found.retry_after)
        if found.locked:
            state.refusals.remember(key, found.retry_after)
            state.record("locked", key, found.retry_after)
            send(signals.locked_out, key, retry_after=found.retry_after)
        return found.locked, found.retry_after

    def record_success(self, key: str) -> None:
        """Clear every failure and lock of ``key``."""
        state = current_state()
        state.refusals.forget(key)
        state.storage.lockout_reset(key)
        send(signals.lockout_reset, key)

    def reset(self, key: str | None = None) -> None:
        """Forget ``key`` entirely: lock, failures, attempts and rate limits.
        With no key, forget every key under the prefix (between tests, say),
        including the refusals this process remembers.

        :raises StorageError: when storage fails (an administrative action
            has nothing to fall back to).
        """
        state = current_state()
        if key is None:
            state.refusals.clear()
            state.storage.clear()
            return
        state.forget(key, "reset")

    def events(self, limit: int = 100) -> list[dict[str, Any]]:
        """The recent events, newest first: dicts with ``time`` (Unix
        seconds), ``kind`` (``locked``, ``reset``, ``unlocked``,
        ``storage_error``, ``storage_recovered``), ``key``, ``endpoint``,
        ``client_ip`` and ``retry_after``. On Redis they are shared by every
        process; on memory, this process's own."""
        return current_state().events.recent(limit)

    # -- operations ---------------------------------------------------------------

    def dashboard_blueprint(
        self, authorize: Callable[[], bool], *, url_prefix: str = "/lockout"
    ) -> Blueprint:
        """The operations dashboard, to register on the app.

        :param authorize: called on every request of the blueprint; when it
            returns False the answer is 403, for every page and action.
        """
        from .dashboard import dashboard_blueprint

        return dashboard_blueprint(authorize, url_prefix=url_prefix)

    def issue_unlock_token(self, key: str, ttl_seconds: float = 3600) -> str:
        """A single-use token that unlocks ``key`` (mail it to the owner,
        say, from the ``locked_out`` signal). Only its hash is stored.

        ``key`` is a logical key, folded as the CLI folds it:
        ``login:email:Alice@X.com`` unlocks ``login:email:alice@x.com``.

        :raises ValueError: when ``key`` is not a logical key.
        :raises StorageError: when storage fails, in every fail mode.
        """
        canonical = canonical_key(key) if isinstance(key, str) else None
        if canonical is None:
            raise ValueError(
                f"{key!r} is not a logical key: expected <scope>:<type>:<value>,"
                " for example login:email:alice@example.com"
            )
        if not ttl_seconds > 0:
            raise ValueError("ttl_seconds must be greater than 0.")
        plaintext, token_hash = generate_opaque_token()
        current_state().storage.token_put(_UNLOCK + token_hash, canonical, ttl_seconds)
        return plaintext

    def redeem_unlock_token(self, token: object) -> str | None:
        """Unlock the key of ``token`` once and return it; None for a used,
        expired, forged or unknown token. Of racing redeemers one wins."""
        if not isinstance(token, str) or not token.isascii() or len(token) > 1024:
            return None
        state = current_state()
        key = state.storage.token_take(_UNLOCK + hash_opaque_token(token))
        if key is None:
            return None
        state.unlock(key)
        return key


def _surges_on() -> AppState:
    state = current_state()
    if not state.settings.surge.enabled:
        raise RuntimeError(
            "LOCKOUT_SURGE is False: this app counts no surges. Set it to True"
            " to start or end one."
        )
    return state


def _after_request(response: Response) -> Response:
    """Settle the request's attempts, then stamp the rate-limit headers: one
    hook, as Flask looks each hook up on every request of the app."""
    if _UNWARNED:
        _warn_if_multiprocess()
    return add_rate_limit_headers(attempts.settle_on_response(response))


def _warn_if_multiprocess() -> None:
    """Warn once per process when memory storage serves a multi-process
    server: N workers give an attacker N budgets, silently."""
    if not request.environ.get("wsgi.multiprocess"):
        return
    state = current_app.extensions.get("lockout")
    with _unwarned_lock:
        if not isinstance(state, AppState) or state not in _UNWARNED:
            return
        _UNWARNED.discard(state)
    logger.warning(
        "Flask-Lockout stores its state in memory (LOCKOUT_STORAGE_URI ="
        " 'memory://') under a multi-process server: every process counts on"
        " its own, so N worker processes give an attacker N times the guesses"
        " of the policy (N budgets). Set LOCKOUT_STORAGE_URI to Redis (such as"
        " 'redis://localhost:6379/0') to share one count. This warning is"
        " given once per process."
    )
