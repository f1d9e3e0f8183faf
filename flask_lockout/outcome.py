"""Settling a reserved attempt from what really happened.

The attempt was counted as a failure when it was reserved. After the app's
error handlers have made the final response, :func:`settle_on_response`
(an ``after_request`` hook) reads the app's declaration and that response:
a success gives the attempt back and forgives the account's own failures,
a 5xx gives it back once per key and failure window (a password check that
raises on a mismatch also ends in a 5xx), anything else leaves it counted.
A request that never reaches ``after_request`` (an exception propagated in
testing mode) is settled the same way in teardown.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import request
from werkzeug.wrappers import Response

from . import signals
from .decorators import Guard
from .device import issue_device_cookie
from .errors import StorageError
from .policy import Outcome
from .request_state import request_state
from .state import AppState, current_state, send
from .storage.base import Settlement

logger = logging.getLogger("flask_lockout")


def declare(outcome: Outcome) -> None:
    """Record the view's verdict on the attempts of this request."""
    guards: list[Guard] | None = request_state().get("guards")
    if not guards:
        if not current_state().settings.enabled:
            return
        raise RuntimeError(
            f"lockout.{'succeeded' if outcome is Outcome.SUCCESS else 'failed'}()"
            " was called outside a view guarded by @lockout_on_failure."
        )
    for guard in guards:
        # An explicit failure is never overridden by a later success.
        if guard.declared is not Outcome.FAILURE:
            guard.declared = outcome


def on_user_logged_in(sender: Any, **extra: Any) -> None:
    """Flask-Login's ``user_logged_in``: the request authenticated someone."""
    if request_state().get("guards"):
        declare(Outcome.SUCCESS)


def settle_on_response(response: Response) -> Response:
    """After-request hook: settle every attempt of this request, and send
    its events once the response is out."""
    scope = request_state()
    guards: list[Guard] | None = scope.pop("guards", None)
    if guards:
        state = current_state()
        for guard in guards:
            outcome = _outcome(state, guard, response)
            _settle(state, guard, outcome)
            if outcome is Outcome.SUCCESS and guard.account and state.device_cookies:
                issue_device_cookie(response, guard.account)
    if scope.pop("flush", False):
        # Events go out once the response is sent: never before a refusal.
        response.call_on_close(current_state().events.flush)
    return response


def release_unsettled(error: BaseException | None) -> None:
    """Teardown hook: attempts that no response settled (the view raised and
    the exception propagated) are no verdict."""
    guards: list[Guard] | None = request_state().pop("guards", None)
    if guards:
        state = current_state()
        for guard in guards:
            _settle(state, guard, Outcome.UNKNOWN)


def _outcome(state: AppState, guard: Guard, response: Response) -> Outcome:
    if guard.declared is Outcome.SUCCESS and response.status_code >= 400:
        # A success declared early (the password) and an error after it (a
        # wrong second factor): the final answer wins.
        return Outcome.FAILURE
    if guard.declared is not None:
        if guard.declared is Outcome.SUCCESS:
            state.declared_success.add(request.endpoint or "")
        return guard.declared
    if guard.success is not None and guard.success(response):
        return Outcome.SUCCESS
    if guard.failure is not None:
        return Outcome.FAILURE if guard.failure(response) else Outcome.UNKNOWN
    if response.status_code >= 500:
        _warn_once(
            state,
            "%s answered %d to an attempt: it is given back once per key and"
            " failure window, then counted. If the password check raises on a"
            " mismatch (argon2's verify() does), catch it and answer the"
            " failure.",
            response.status_code,
        )
        return Outcome.UNKNOWN
    if response.status_code < 400 and guard.success is None:
        _warn_undeclared(state, response.status_code)
    return Outcome.FAILURE


def _warn_undeclared(state: AppState, status: int) -> None:
    if (request.endpoint or request.path) in state.declared_success:
        return
    _warn_once(
        state,
        "%s answered %d and counted as a FAILURE: it never declared a success."
        " Call lockout.succeeded() once the login is complete (Flask-Login's"
        " login_user() does it for you), or pass success=... to"
        " @lockout_on_failure; otherwise every login counts against the account.",
        status,
    )


def _warn_once(state: AppState, message: str, status: int) -> None:
    """Log ``message`` once per endpoint and kind, not once per request."""
    endpoint = request.endpoint or request.path
    if (endpoint, message) in state.warned_undeclared:
        return
    state.warned_undeclared.add((endpoint, message))
    logger.warning(message, endpoint, status)


def _settle(state: AppState, guard: Guard, outcome: Outcome) -> None:
    state.decided(_DECISIONS.get(outcome, "allowed"))
    if outcome is Outcome.FAILURE:
        _report_failure(state, guard)
        return
    settlements = [
        Settlement(
            kv.key,
            _per_key(outcome, guard, kv.key, kv.spelling),
            kv.spelling,
            reservation.receipt,
        )
        for kv, reservation in zip(guard.keys, guard.reservations, strict=True)
    ]
    try:
        state.storage.lockout_settle_all(
            settlements, state.settings.policy, guard.token
        )
    except StorageError as exc:
        # The answer is out; the attempt stays counted, which is safe.
        logger.warning("Could not settle an attempt (%s); it stays counted.", exc)
        return
    if outcome is Outcome.SUCCESS:
        for settlement in settlements:
            if settlement.outcome is not Outcome.RELEASE:
                state.refusals.forget(settlement.key)
                send(signals.lockout_reset, settlement.key)


_DECISIONS = {Outcome.FAILURE: "failure", Outcome.SUCCESS: "success"}


def _per_key(outcome: Outcome, guard: Guard, key: str, spelling: str) -> Outcome:
    if outcome is not Outcome.SUCCESS:
        return outcome
    if guard.device:
        # The device's own bucket is cleared; the one all devices of the
        # account share is never forgiven, as a cookie may have been minted
        # by a look-alike's owner.
        return Outcome.CLEAR if key.split(":", 2)[1] == "device" else Outcome.RELEASE
    # ip keys have no spelling: a success never forgives an address.
    return Outcome.SUCCESS if spelling else Outcome.RELEASE


def _report_failure(state: AppState, guard: Guard) -> None:
    for kv, reservation in zip(guard.keys, guard.reservations, strict=True):
        send(signals.failure_recorded, kv.key, retry_after=reservation.retry_after)
        if reservation.locked:
            state.refusals.remember(kv.key, reservation.retry_after)
            state.record("locked", kv.key, reservation.retry_after)
            send(signals.locked_out, kv.key, retry_after=reservation.retry_after)


def install(app: Any) -> None:
    """Wire the teardown hook into ``app``, and Flask-Login's signal when
    installed (:func:`settle_on_response` runs in the extension's one
    ``after_request`` hook)."""
    app.teardown_request(release_unsettled)
    try:
        from flask_login.signals import user_logged_in
    except ImportError:
        return
    user_logged_in.connect(on_user_logged_in, sender=app, weak=False)
