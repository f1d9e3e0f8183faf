"""``@throttled`` and ``@lockout_on_failure`` for sync, async and class-based views.

Both act before the view. ``lockout_on_failure`` reserves one attempt on
every key (counted as a failure at once) and leaves a :class:`Guard` in the
request's state (:mod:`.request_state`); :mod:`flask_lockout.outcome`
settles it from the final response.
"""

from __future__ import annotations

import functools
import inspect
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar, cast

from flask import current_app, request
from werkzeug.wrappers import Response

from . import signals
from .device import COOKIE_NAME, device_nonce
from .errors import TooManyAttempts
from .keys import (
    KeySpec,
    KeyValue,
    ParsedSpec,
    check_scope,
    current_scope,
    logical_key,
    parse_specs,
)
from .limits import Limit, RateLimitResult, as_limits
from .policy import (
    DEFAULT_RESERVATION_SECONDS,
    Outcome,
    Reservation,
    reservation_token,
)
from .request_state import request_state
from .state import AppState, current_state, send
from .storage.base import AttemptKey, Settlement

F = TypeVar("F", bound=Callable[..., Any])
ResponseTest = Callable[[Response], bool]

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
        deferred_limit = DeferredLimit(
            specs, current_scope(scope), limits or state.settings.default_limits
        )
        if deferred:
            # The lockout guard right below reads the keys, its own addresses
            # first, and sends both in one round trip.
            request_state()["pending_limit"] = deferred_limit
            return
        keys = deferred_limit.keys(state)
        # Every key must pass; when one refuses, none is counted.
        check_rate_limit(
            state,
            keys,
            deferred_limit.limits,
            state.storage.rate_limit_hit_many(keys, deferred_limit.limits),
        )

    def decorator(view: F) -> F:
        deferred = view in _GUARDED
        return _guarded(view, lambda: before(deferred))

    return decorator


class DeferredLimit(NamedTuple):
    """A ``@throttled`` rate limit: its key specs (addresses first), scope and
    limits."""

    specs: tuple[ParsedSpec, ...]
    scope: str
    limits: Sequence[Limit]

    def keys(self, state: AppState, addresses_only: bool = False) -> list[str]:
        """The request's keys, addresses first: a refused address costs no
        form parsing. Raises the 429 for a refusal this process knows."""
        refusals = state.refusals
        keys = []
        for spec in self.specs:
            if addresses_only and spec.source != "ip":
                break
            for kv in spec.read(self.scope):
                if refusals:
                    cached = refusals.retry_after(f"rl:{kv.key}")
                    if cached:
                        state.decided("rate_limited")
                        raise TooManyAttempts(cached)
                keys.append(kv.key)
        return keys


def check_rate_limit(
    state: AppState, keys: Sequence[str], limits: Sequence[Limit], result: Any
) -> None:
    """Keep ``result`` for the headers; on a refusal remember it and raise."""
    request_state()["rate_limit"] = result
    if result.allowed:
        return
    refusing = keys[result.window // len(limits)]
    state.refusals.remember(f"rl:{refusing}", result.retry_after)
    state.decided("rate_limited")
    send(
        signals.rate_limited,
        refusing,
        limit=result.limit,
        retry_after=result.retry_after,
    )
    raise TooManyAttempts(result.retry_after)


@dataclass
class Guard:
    """One request's reserved attempt: its keys, the reservation token and
    answers, and how the view said the attempt ended."""

    keys: list[KeyValue]
    token: str
    reservations: list[Reservation]
    success: ResponseTest | None = None
    failure: ResponseTest | None = None
    #: The exact spelling of the account, for a device cookie on success.
    account: str | None = None
    #: Set by ``lockout.succeeded()`` / ``failed()`` / Flask-Login.
    declared: Outcome | None = None
    #: True when a device cookie swapped the keys for the device's bucket.
    device: bool = False


def lockout_on_failure(
    by: KeySpec | Sequence[KeySpec] = ("ip", "form:email"),
    failure: ResponseTest | None = None,
    *,
    success: ResponseTest | None = None,
    scope: str | None = None,
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
    """
    specs = _addresses_first(parse_specs(by))
    check_scope(scope)

    def before() -> None:
        state = current_state()
        if not state.settings.enabled:
            return
        guard = reserve(state, current_scope(scope), specs)
        guard.success, guard.failure = success, failure
        request_state().setdefault("guards", []).append(guard)

    def decorator(view: F) -> F:
        wrapper = _guarded(view, before)
        _GUARDED.add(wrapper)
        return wrapper

    return decorator


def _addresses_first(specs: tuple[ParsedSpec, ...]) -> tuple[ParsedSpec, ...]:
    """Every key must pass, so their order is free: ``ip`` keys first let a
    refused address be answered before the form is parsed."""
    return tuple(sorted(specs, key=lambda spec: spec.source != "ip"))


def reserve(state: AppState, scope: str, specs: Sequence[ParsedSpec]) -> Guard:
    """Reserve one attempt on every key of the request, or raise the 429."""
    # Taken first: a request refused from the cache below costs nothing.
    pending: DeferredLimit | None = request_state().pop("pending_limit", None)
    # Nothing known refused (the usual case): nothing to answer early.
    known = bool(state.refusals)
    if pending is not None and known:
        pending.keys(state, addresses_only=True)
    if known and not (state.device_cookies and COOKIE_NAME in request.cookies):
        # No device can stand in for the address: a refused address is
        # answered before the form is parsed.
        for spec in specs:
            if spec.source != "ip":
                break
            for kv in spec.read(scope):
                _refuse_if_cached(state, kv.key, pending)
    keys = [kv for spec in specs for kv in spec.read(scope)]
    accounts = [kv for kv in keys if kv.spelling]
    # Every account key of the request, with the exact spelling typed.
    account = "\0".join([scope, *(f"{kv.key}\0{kv.spelling}" for kv in accounts)])
    nonce = device_nonce(account) if accounts and state.device_cookies else None
    if nonce is not None:
        # A device known to this account has its own bucket, ip included;
        # all devices of the account share a second one.
        values = "|".join(kv.key.split(":", 2)[2] for kv in accounts)
        keys = [
            KeyValue(accounts[0].spec, logical_key(scope, "device", nonce), ""),
            KeyValue(accounts[0].spec, logical_key(scope, "devices", values), ""),
        ]
    if known:
        for kv in keys:
            _refuse_if_cached(state, kv.key, pending)
    token = reservation_token()
    policy = state.settings.policy
    attempts = [AttemptKey(kv.key, kv.spelling) for kv in keys]
    if pending is not None:
        limit_keys = pending.keys(state)
        result, answers = state.storage.lockout_guard(
            limit_keys,
            pending.limits,
            attempts,
            policy,
            token,
            DEFAULT_RESERVATION_SECONDS,
        )
        check_rate_limit(state, limit_keys, pending.limits, result)
    else:
        answers = state.storage.lockout_reserve_all(
            attempts, policy, token, DEFAULT_RESERVATION_SECONDS
        )
    refused = [(kv, a) for kv, a in zip(keys, answers, strict=True) if not a.granted]
    if refused:
        granted = [
            Settlement(kv.key, Outcome.RELEASE, kv.spelling, a.receipt)
            for kv, a in zip(keys, answers, strict=True)
            if a.granted
        ]
        if granted:  # give back what the other keys counted
            state.storage.lockout_settle_all(granted, policy, token)
        for kv, answer in refused:
            if answer.locked:
                state.refusals.remember(kv.key, answer.retry_after)
                send(signals.locked_out, kv.key, retry_after=answer.retry_after)
        state.decided("locked")
        raise TooManyAttempts(max(answer.retry_after for _, answer in refused))
    if nonce is not None:
        return Guard(keys, token, answers, device=True)
    return Guard(keys, token, answers, account=account if accounts else None)


def _refuse_if_cached(state: AppState, key: str, pending: DeferredLimit | None) -> None:
    """Raise the 429 for a key this process knows to be locked."""
    cached = state.refusals.retry_after(key)
    if not cached:
        return
    if pending is not None:  # a refused request: no quota left to show
        limit = pending.limits[0].count
        request_state()["rate_limit"] = RateLimitResult(False, 0, cached, limit, cached)
    send(signals.locked_out, key, retry_after=cached)
    state.decided("locked")
    raise TooManyAttempts(cached)
