"""``@throttled`` and ``@lockout_on_failure`` for sync, async and class-based views.

Both act before the view; the attempt's life (reserve, settle) lives in
:mod:`.attempts`.
"""

from __future__ import annotations

import functools
import inspect
import weakref
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

from flask import current_app, request

from .attempt_keys import DeferredLimit
from .attempts import ResponseTest, check_rate_limit, reserve
from .keys import KeySpec, ParsedSpec, check_scope, current_scope, parse_specs
from .limits import Limit, as_limits
from .request_state import request_state, this_request
from .state import current_state

F = TypeVar("F", bound=Callable[..., Any])

#: Views with limits of their own (``@throttled``, ``@exempt``): the app's
#: limits leave them alone.
_OWN_LIMITS: weakref.WeakSet[Callable[..., Any]] = weakref.WeakSet()
_ADDRESS = parse_specs("ip")

#: Views wrapped by ``lockout_on_failure`` itself: a ``@throttled`` stacked
#: right on one of them leaves its rate limit to the same round trip.
_GUARDED: weakref.WeakSet[Callable[..., Any]] = weakref.WeakSet()


def _guarded(view: F, before: Callable[[], None]) -> F:
    """Run ``before``, then the view (async views through ``ensure_sync``)."""

    # Flask hands a sync view back unchanged: look only async ones up.
    is_async = inspect.iscoroutinefunction(view)

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        before()
        if is_async:
            return current_app.ensure_sync(view)(*args, **kwargs)
        return view(*args, **kwargs)

    return cast(F, wrapper)


def throttled(
    limit: str | Limit | Sequence[Limit] | None = None,
    *,
    by: KeySpec | Sequence[KeySpec] = "ip",
    scope: str | None = None,
    exempt_when: Callable[[], bool] | None = None,
) -> Callable[[F], F]:
    """Rate-limit a view with a sliding-window counter.

    :param limit: ``"5/min;100/day"``, checked now; None uses
        ``LOCKOUT_DEFAULT_LIMITS``.
    :param by: one key spec or several; every key must pass.
    :param scope: the first part of the logical keys; defaults to the endpoint.
    :param exempt_when: a callable; when it returns True the request is not
        counted.
    :raises ValueError: for a malformed limit or key spec, at decoration time.

    A refused request gets 429 with ``Retry-After``; limited routes carry
    ``RateLimit-Limit``, ``RateLimit-Remaining`` and ``RateLimit-Reset``.
    """
    limits = as_limits(limit) if limit is not None else None
    specs = _addresses_first(parse_specs(by))
    check_scope(scope)

    def before(deferred: bool) -> None:
        state = current_state()
        if not state.settings.enabled or (exempt_when is not None and exempt_when()):
            return
        req = this_request()
        deferred_limit = DeferredLimit(
            specs, current_scope(scope, req), limits or state.settings.default_limits
        )
        if deferred:
            # The lockout guard right below reads the keys, its own addresses
            # first, and sends both in one round trip.
            request_state(req)["pending_limit"] = deferred_limit
            return
        keys = deferred_limit.keys(state, req)
        # Every key must pass; when one refuses, none is counted.
        check_rate_limit(
            state,
            req,
            keys,
            deferred_limit.limits,
            state.storage.rate_limit_hit_many(
                keys, deferred_limit.limits, deferred_limit.reported
            ),
        )
        # A stacked lockout guard counts its own verdict (failure, success).
        state.decided("allowed")

    def decorator(view: F) -> F:
        deferred = view in _GUARDED
        wrapper = _guarded(view, lambda: before(deferred))
        _OWN_LIMITS.add(wrapper)
        return wrapper

    return decorator


def exempt(view: F) -> F:
    """Take ``view`` out of ``LOCKOUT_APP_LIMITS``."""
    _OWN_LIMITS.add(view)
    return view


def apply_app_limits() -> None:
    """Before-request hook for ``LOCKOUT_APP_LIMITS``: a limit per client
    address on every route without a ``@throttled`` of its own (or
    ``@exempt``), static files excluded."""
    state = current_state()
    limits = state.settings.app_limits
    endpoint = request.endpoint
    if not limits or not state.settings.enabled or endpoint is None:
        return
    if endpoint == "static" or endpoint.endswith(".static"):
        return
    if _has_own_limits(current_app.view_functions.get(endpoint)):
        return
    req = this_request()
    app_limit = DeferredLimit(_ADDRESS, current_scope(None, req), limits)
    keys = app_limit.keys(state, req)
    check_rate_limit(
        state, req, keys, limits, state.storage.rate_limit_hit_many(keys, limits)
    )
    state.decided("allowed")


def guarded_scopes(view_functions: dict[str, Callable[..., Any]]) -> set[str]:
    """The scopes of an app's ``@lockout_on_failure`` views (their endpoints
    where none was given): where surges can be."""
    scopes = set()
    for endpoint, registered in view_functions.items():
        view: Any = registered
        while view is not None:
            if view in _GUARDED:
                scope = getattr(view, "lockout_scope", None)
                scopes.add(scope or endpoint.replace(":", "."))
                break
            view = getattr(view, "__wrapped__", None)
    return scopes


def _has_own_limits(view: Any) -> bool:
    """True when ``view``, or a view it wraps, has limits of its own."""
    while view is not None:
        if view in _OWN_LIMITS:
            return True
        view = getattr(view, "__wrapped__", None)
    return False


def lockout_on_failure(
    by: KeySpec | Sequence[KeySpec] = ("ip", "form:email"),
    failure: ResponseTest | None = None,
    *,
    success: ResponseTest | None = None,
    scope: str | None = None,
    challenge: Callable[[], bool] | None = None,
) -> Callable[[F], F]:
    """Refuse locked keys before the view; count what really happened after.

    Before the view runs, one attempt is reserved on every key, atomically,
    and counted as a failure at once, so concurrent requests never get more
    guesses than the policy allows; a locked key gets 429.

    After the view, on the final response (after the app's error handlers):

    - a **success** only when the app says so: ``lockout.succeeded()`` in
      the view, Flask-Login's ``login_user`` during the request, or
      ``success(response)`` true. It gives the attempt back and forgives the
      failures typed with the same spelling of the account; ``ip`` keys are
      never forgiven;
    - ``failure(response)``, when given, picks the failures: a response it
      rejects is no verdict;
    - a **failure** for everything else that answered: 401, 403, a form
      re-rendered with 200, a redirect, ``lockout.failed()``;
    - **no verdict** for a 5xx: the attempt is given back (and logged).

    :param by: key specs; a failure counts on every key.
    :param scope: the first part of the logical keys; defaults to the
        endpoint. Give every view that checks the same secret one scope, so
        that they share one budget.
    :param challenge: ``verify() -> bool``, a step-up check the app makes
        (a CAPTCHA field, an e-mailed code). During a surge it runs before
        the decision for attempts from a device without a cookie; true
        lifts the surge limits (never the policy).
        ``lockout.challenge_required()`` tells the form to show it.
    """
    specs = _addresses_first(parse_specs(by))
    check_scope(scope)
    if challenge is not None and not callable(challenge):
        raise ValueError("challenge must be a callable returning True or False.")

    def before() -> None:
        state = current_state()
        if not state.settings.enabled:
            return
        req = this_request()
        guard = reserve(state, req, current_scope(scope, req), specs, challenge)
        guard.success, guard.failure = success, failure
        request_state(req).setdefault("guards", []).append(guard)

    def decorator(view: F) -> F:
        wrapper = _guarded(view, before)
        _GUARDED.add(wrapper)
        wrapper.lockout_scope = scope  # type: ignore[attr-defined]
        return wrapper

    return decorator


def _addresses_first(specs: tuple[ParsedSpec, ...]) -> tuple[ParsedSpec, ...]:
    """Every key must pass, so their order is free: ``ip`` keys first let a
    refused address be answered before the form is parsed."""
    return tuple(sorted(specs, key=lambda spec: spec.source != "ip"))
