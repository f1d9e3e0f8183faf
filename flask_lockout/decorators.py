"""``@throttled`` and ``@lockout_on_failure`` for sync, async and class-based views."""

from __future__ import annotations

import functools
import inspect
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
from .lockout import Attempt
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
        tightest = None
        for _spec, key in _keys(scope, specs)[0]:
            try:
                result = state.storage.rate_limit_hit(key, applied)
            except StorageError as exc:
                state.storage_failed(exc, key)
                continue
            if not result.allowed:
                g._lockout_rate_limit = result
                send(
                    signals.rate_limited,
                    key,
                    limit=result.limit,
                    retry_after=result.retry_after,
                )
                raise TooManyAttempts(result.retry_after)
            if tightest is None or result.remaining < tightest.remaining:
                tightest = result
        if tightest is not None:
            g._lockout_rate_limit = tightest

    def after(_token: None, result: Any, _error: BaseException | None) -> Any:
        return result

    def decorator(view: F) -> F:
        return _wrap(view, before, after)

    return decorator


Reserved = list[tuple[ParsedSpec, str, Attempt]]


class _Guard:
    """The attempts one request holds, and the account a success marks."""

    def __init__(self, reserved: Reserved, account: str | None) -> None:
        self.reserved = reserved
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
    """
    specs = parse_specs(by)

    def before() -> _Guard | None:
        state = _state()
        if not state.settings.enabled:
            return None
        keys, account = _keys(scope, specs, state.settings.device_cookies)
        if not state.settings.device_cookies:
            account = None  # no device cookie to issue
        for _spec, key in keys:
            cached = state.locked.retry_after(key)
            if cached:
                send(signals.locked_out, key, retry_after=cached)
                raise TooManyAttempts(cached)
        reserved: Reserved = []
        try:
            for spec, key in keys:
                attempt = state.engine.attempt(key)
                if not attempt.granted:
                    _refuse(state, reserved, key, attempt)
                reserved.append((spec, key, attempt))
        except StorageError as exc:
            _release(reserved)
            state.storage_failed(exc, keys[0][1])
            return None  # failing open: the view runs unguarded
        return _Guard(reserved, account)

    def after(guard: _Guard | None, result: Any, error: BaseException | None) -> Any:
        if guard is None or not guard.reserved:
            return result
        if error is not None and not isinstance(error, HTTPException):
            _release(guard.reserved)
            return result
        response = (
            error.get_response()
            if isinstance(error, HTTPException)
            else current_app.make_response(result)
        )
        succeeded = _settle(_state(), guard.reserved, response, failure, success)
        if succeeded and guard.account is not None and error is None:
            issue_device_cookie(response, guard.account)
        return response if error is None else result

    def decorator(view: F) -> F:
        return _wrap(view, before, after)

    return decorator


def _refuse(state: AppState, reserved: Reserved, key: str, attempt: Attempt) -> None:
    _release(reserved)
    if attempt.locked:
        state.locked.remember(key, attempt.retry_after)
        send(signals.locked_out, key, retry_after=attempt.retry_after)
    raise TooManyAttempts(attempt.retry_after)


def _release(reserved: Reserved) -> None:
    for _spec, _key, attempt in reserved:
        try:
            attempt.release()
        except StorageError:
            pass  # the reservation expires by itself


def _settle(
    state: AppState,
    reserved: Reserved,
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
    for spec, key, attempt in reserved:
        try:
            if failed:
                locked, retry_after = attempt.failed()
                send(signals.failure_recorded, key, retry_after=retry_after)
                if locked:
                    state.locked.remember(key, retry_after)
                    send(signals.locked_out, key, retry_after=retry_after)
            elif succeeded and spec.account_like:
                attempt.succeeded()
                state.locked.forget(key)
                send(signals.lockout_reset, key)
            else:
                attempt.release()
        except StorageError as exc:
            # The view has answered; an outage now must not change that.
            try:
                state.storage_failed(exc, key)
            except HTTPException:
                pass
    return succeeded
