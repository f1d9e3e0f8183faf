"""``@throttled`` and ``@lockout_on_failure`` for sync, async and class-based views."""

from __future__ import annotations

import functools
import inspect
import secrets
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

from flask import current_app, g, request
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from . import signals
from .device import device_nonce, issue_device_cookie
from .errors import StorageError, TooManyAttempts
from .extension import AppState, _state, send
from .keys import KeySpec, ParsedSpec, logical_key, parse_specs
from .limits import Limit
from .lockout import DEFAULT_RESERVATION_SECONDS
from .ratelimit import as_limits

F = TypeVar("F", bound=Callable[..., Any])


def _wrap(
    view: F,
    before: Callable[[], Any],
    after: Callable[[Any, Any, BaseException | None], Any],
) -> F:
    """Run ``before``, the view, then ``after(token, result, error)``."""
    if inspect.iscoroutinefunction(view):

        @functools.wraps(view)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            token = before()
            try:
                result = await view(*args, **kwargs)
            except BaseException as exc:
                after(token, None, exc)
                raise
            return after(token, result, None)

        return cast(F, async_wrapper)

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        token = before()
        try:
            result = view(*args, **kwargs)
        except BaseException as exc:
            after(token, None, exc)
            raise
        return after(token, result, None)

    return cast(F, wrapper)


def _keys(
    scope: str | None, specs: Sequence[ParsedSpec], devices: bool = False
) -> tuple[list[tuple[ParsedSpec, str]], str | None]:
    """The request's logical keys, and its account (the first account-like
    value). With ``devices``, a valid device cookie for that account swaps
    the account's key for the device's own bucket."""
    name = scope or request.endpoint or request.path
    keys, account = [], None
    for spec in specs:
        value = spec.value()
        key = logical_key(name, spec, value)
        if account is None and spec.account_like:
            account = value
            nonce = device_nonce(value) if devices else None
            if nonce is not None:
                key = f"{name}:device:{nonce}"
        keys.append((spec, key))
    return keys, account


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
    specs = parse_specs(by)

    def before() -> None:
        state = _state()
        if not state.settings.enabled or (exempt_when is not None and exempt_when()):
            return
        applied = limits or state.settings.default_limits
        keys = [key for _spec, key in _keys(scope, specs)[0]]
        try:
            # Every key must pass; when one refuses, none is counted.
            result = state.storage.rate_limit_hit_many(keys, applied)
        except StorageError as exc:
            state.storage_failed(exc, keys[0])
            return
        g._lockout_rate_limit = result
        if not result.allowed:
            refusing = keys[result.window // len(applied)]
            send(
                signals.rate_limited,
                refusing,
                limit=result.limit,
                retry_after=result.retry_after,
            )
            raise TooManyAttempts(result.retry_after)

    def after(_token: None, result: Any, _error: BaseException | None) -> Any:
        return result

    def decorator(view: F) -> F:
        return _wrap(view, before, after)

    return decorator


class _Guard:
    """What one request holds: its keys, their reservation token, and the
    account a success marks with a device cookie."""

    def __init__(
        self, keys: list[tuple[ParsedSpec, str]], token: str, account: str | None
    ) -> None:
        self.keys = keys
        self.token = token
        self.account = account


def lockout_on_failure(
    by: KeySpec | Sequence[KeySpec] = ("ip", "form:email"),
    failure: Callable[[Response], bool] | None = None,
    *,
    success: Callable[[Response], bool] | None = None,
    scope: str | None = None,
) -> Callable[[F], F]:
    """Refuse locked keys before the view, count its outcome after.

    Before the view runs, one attempt is reserved on every key, atomically,
    so concurrent requests never get more verifications than the policy
    allows; a locked key, or one whose attempts are all in flight, gets 429.
    Afterwards a 401 or 403 (or ``failure(response)`` true) counts a failure
    on every key; a 2xx (or ``success(response)`` true) clears the
    account-like keys but not ``ip`` keys, whose failures only expire. Any
    other outcome, including an exception, just releases the attempts.
    Reserving, and settling, all the keys of a request is one storage round
    trip each.
    """
    specs = parse_specs(by)

    def before() -> _Guard | None:
        state = _state()
        if not state.settings.enabled:
            return None
        devices = state.settings.device_cookies
        keys, account = _keys(scope, specs, devices)
        for _spec, key in keys:
            cached = state.locked.retry_after(key)
            if cached:
                send(signals.locked_out, key, retry_after=cached)
                raise TooManyAttempts(cached)
        token = secrets.token_hex(8)
        names = [key for _spec, key in keys]
        try:
            answers = state.storage.lockout_reserve_all(
                names, state.settings.policy, token, DEFAULT_RESERVATION_SECONDS
            )
        except StorageError as exc:
            state.storage_failed(exc, names[0])
            return None  # failing open: the view runs unguarded
        refused = [(k, a) for k, a in zip(names, answers, strict=True) if not a.granted]
        if refused:
            granted = [k for k, a in zip(names, answers, strict=True) if a.granted]
            _release(state, granted, token)
            for key, answer in refused:
                if answer.locked:
                    state.locked.remember(key, answer.retry_after)
                    send(signals.locked_out, key, retry_after=answer.retry_after)
            raise TooManyAttempts(max(answer.retry_after for _, answer in refused))
        return _Guard(keys, token, account if devices else None)

    def after(guard: _Guard | None, result: Any, error: BaseException | None) -> Any:
        if guard is None:
            return result
        state = _state()
        if error is not None and not isinstance(error, HTTPException):
            _release(state, [key for _spec, key in guard.keys], guard.token)
            return result
        response = (
            error.get_response()
            if isinstance(error, HTTPException)
            else current_app.make_response(result)
        )
        succeeded = _settle(state, guard, response, failure, success)
        if succeeded and guard.account is not None and error is None:
            issue_device_cookie(response, guard.account)
        return response if error is None else result

    def decorator(view: F) -> F:
        return _wrap(view, before, after)

    return decorator


def _release(state: AppState, keys: list[str], token: str) -> None:
    if not keys:
        return
    try:
        state.storage.lockout_settle_all(
            [(key, "release") for key in keys], state.settings.policy, token
        )
    except StorageError:
        pass  # the reservations expire by themselves


def _settle(
    state: AppState,
    guard: _Guard,
    response: Response,
    failure: Callable[[Response], bool] | None,
    success: Callable[[Response], bool] | None,
) -> bool:
    """Count the outcome on every key; True when it was a success."""
    status = response.status_code
    failed = failure(response) if failure is not None else status in (401, 403)
    succeeded = not failed and (
        success(response) if success is not None else 200 <= status < 300
    )
    outcomes = [
        (
            key,
            "failure"
            if failed
            else "success"
            if succeeded and spec.account_like
            else "release",
        )
        for spec, key in guard.keys
    ]
    try:
        states = state.storage.lockout_settle_all(
            outcomes, state.settings.policy, guard.token
        )
    except StorageError as exc:
        # The view has answered; an outage now must not change that.
        try:
            state.storage_failed(exc, outcomes[0][0])
        except HTTPException:
            pass
        return succeeded
    for (key, outcome), found in zip(outcomes, states, strict=True):
        if outcome == "failure":
            send(signals.failure_recorded, key, retry_after=found.retry_after)
            if found.locked:
                state.locked.remember(key, found.retry_after)
                send(signals.locked_out, key, retry_after=found.retry_after)
        elif outcome == "success":
            state.locked.forget(key)
            send(signals.lockout_reset, key)
    return succeeded
