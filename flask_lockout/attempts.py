"""An attempt's life: guarded before the view, reserved, settled after it.

``@lockout_on_failure`` calls :func:`reserve` before the view: one attempt
is reserved on every key of the request, atomically, and counted as a
failure at once, so concurrent requests never get more guesses than the
policy allows. The :class:`Guard` it returns waits in the request's state
(:mod:`.request_state`) until :func:`settle_on_response`, an
``after_request`` hook, reads the app's verdict and the final response
(after the app's error handlers): a success gives the attempt back and
forgives the account's own failures, a 5xx gives it back once per key and
failure window, anything else leaves it counted. A request that never
reaches ``after_request`` (an exception propagated in testing mode) is
settled the same way in teardown.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from flask import Request, request
from werkzeug.wrappers import Response

from . import signals
from .attempt_keys import (
    DeferredLimit,
    counted_spelling,
    device_keys,
    device_of,
    has_device_cookie,
    surge_ask,
)
from .device import issue_device_cookie
from .errors import StorageError, TooManyAttempts
from .keys import KeyValue, ParsedSpec
from .limits import Limit
from .policy import (
    DEFAULT_RESERVATION_SECONDS,
    Outcome,
    Reservation,
    reservation_token,
)
from .request_state import request_state, this_request
from .state import AppState, current_state, send
from .storage.base import (
    AttemptAnswer,
    AttemptAsk,
    AttemptKey,
    Settlement,
    SurgeAsk,
)
from .surge import SurgeState

logger = logging.getLogger("flask_lockout")

ResponseTest = Callable[[Response], bool]


def check_rate_limit(
    state: AppState,
    req: Request,
    keys: Sequence[str],
    limits: Sequence[Limit],
    result: Any,
) -> None:
    """Keep ``result`` for the headers; on a refusal remember it and raise."""
    request_state(req)["rate_limit"] = result
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

    scope: str
    keys: list[KeyValue]
    token: str
    reservations: list[Reservation]
    success: ResponseTest | None = None
    failure: ResponseTest | None = None
    #: The scope and exact spellings of the accounts, for a device cookie.
    account: str | None = None
    #: Set by ``lockout.succeeded()`` / ``failed()`` / Flask-Login.
    declared: Outcome | None = None
    #: True when a device cookie swapped the keys for the device's bucket.
    device: bool = False
    #: True when the scope's surge record counted this attempt.
    surge_counted: bool = False


# -- before the view ----------------------------------------------------------


def reserve(
    state: AppState,
    req: Request,
    scope: str,
    specs: Sequence[ParsedSpec],
    challenge: Callable[[], bool] | None = None,
) -> Guard:
    """Reserve one attempt on every key of the request, or raise the 429.

    1. Refusals this process already knows are answered at once, addresses
       first, so that a refused address costs no form parsing.
    2. The request's keys are read; a valid device cookie for the account
       swaps them for the device's own buckets.
    3. During a surge this process knows of, an attempt from a device
       without a cookie takes the app's ``challenge``.
    4. One round trip decides it all: a stacked ``@throttled``'s rate limit,
       the scope's surge limits and count, and an attempt reserved on every
       key.
    5. When any key refuses, what the others counted is given back.
    """
    pending: DeferredLimit | None = request_state(req).pop("pending_limit", None)
    known = bool(state.refusals)  # nothing known refused: nothing to look up
    if known:
        _refuse_known_addresses(state, req, scope, specs, pending)
    keys = [kv for spec in specs for kv in spec.read(scope, req)]
    account, nonce = device_of(state, req, scope, keys)
    if nonce is not None:
        keys = device_keys(scope, keys, nonce)
    if known:
        for kv in keys:
            _refuse_if_cached(state, kv.key)
    surge = surge_ask(state, req, scope, nonce is not None, challenge)
    token = reservation_token()
    answer = _decide(state, req, keys, token, pending, surge, nonce)
    if surge is not None and answer.surge is not None:
        _surge_seen(state, req, scope, answer.surge, surge, challenge)
    _refuse_if_any_refused(state, keys, answer.reservations, token)
    guard = Guard(scope, keys, token, answer.reservations)
    guard.surge_counted = answer.surge is not None
    if nonce is not None:
        guard.device = True
    else:
        guard.account = account
    return guard


def _refuse_known_addresses(
    state: AppState,
    req: Request,
    scope: str,
    specs: Sequence[ParsedSpec],
    pending: DeferredLimit | None,
) -> None:
    if pending is not None:
        pending.keys(state, req, addresses_only=True)
    if has_device_cookie(state, req):
        return  # a device may stand in for the address: read the account
    for spec in specs:
        if spec.source != "ip":
            break
        for kv in spec.read(scope, req):
            _refuse_if_cached(state, kv.key)


def _surge_seen(
    state: AppState,
    req: Request,
    scope: str,
    seen: SurgeState,
    asked: SurgeAsk,
    challenge: Callable[[], bool] | None,
) -> None:
    """Act on the surge the decision saw: its start or end (once, in the
    process that saw it), what this process believes, and the 429 of a
    refused attempt."""
    state.surge_changed(scope, seen)
    if seen.active and not asked.exempt and challenge is not None:
        request_state(req)["challenge_required"] = True
    if seen.refused:
        state.decided("rate_limited")
        send(
            signals.rate_limited,
            asked.address_key,
            limit=0,
            retry_after=seen.retry_after,
        )
        raise TooManyAttempts(seen.retry_after)


def _decide(
    state: AppState,
    req: Request,
    keys: list[KeyValue],
    token: str,
    pending: DeferredLimit | None,
    surge: SurgeAsk | None,
    nonce: str | None,
) -> AttemptAnswer:
    settings = state.settings
    attempts = [
        AttemptKey(kv.key, counted_spelling(kv), settings.policy_of(kv.key))
        for kv in keys
    ]
    limit_keys = (
        pending.keys(state, req, device=nonce, device_known=True)
        if pending is not None
        else []
    )
    limits = pending.limits if pending is not None else ()
    answer = state.storage.lockout_attempt(
        AttemptAsk(
            attempts,
            settings.policy,
            token,
            DEFAULT_RESERVATION_SECONDS,
            limit_keys,
            limits,
            pending.reported if pending is not None else None,
            surge,
        )
    )
    if answer.rate_limit is not None:
        check_rate_limit(state, req, limit_keys, limits, answer.rate_limit)
    return answer


def _refuse_if_any_refused(
    state: AppState, keys: list[KeyValue], answers: list[Reservation], token: str
) -> None:
    refused = [(kv, a) for kv, a in zip(keys, answers, strict=True) if not a.granted]
    if not refused:
        return
    settings = state.settings
    granted = [
        Settlement(
            kv.key,
            Outcome.RELEASE,
            counted_spelling(kv),
            a.receipt,
            settings.policy_of(kv.key),
        )
        for kv, a in zip(keys, answers, strict=True)
        if a.granted
    ]
    if granted:
        state.storage.lockout_settle_all(granted, state.settings.policy, token)
    for kv, answer in refused:
        if answer.locked:
            state.refusals.remember(kv.key, answer.retry_after)
            send(signals.locked_out, kv.key, retry_after=answer.retry_after)
    state.decided("locked")
    raise TooManyAttempts(max(answer.retry_after for _, answer in refused))


def _refuse_if_cached(state: AppState, key: str) -> None:
    """Raise the 429 for a key this process knows to be locked."""
    cached = state.refusals.retry_after(key)
    if not cached:
        return
    send(signals.locked_out, key, retry_after=cached)
    state.decided("locked")
    raise TooManyAttempts(cached)


# -- the view's verdict ---------------------------------------------------------


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


# -- after the view ---------------------------------------------------------------


def settle_on_response(response: Response) -> Response:
    """After-request hook: settle every attempt of this request, and send
    its events once the response is out."""
    req = this_request()
    scope = request_state(req)
    guards: list[Guard] | None = scope.pop("guards", None)
    if guards:
        state = current_state()
        for guard in guards:
            outcome = _outcome(state, req, guard, response)
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


def _outcome(
    state: AppState, req: Request, guard: Guard, response: Response
) -> Outcome:
    if guard.declared is Outcome.SUCCESS and response.status_code >= 400:
        # A success declared early (the password) and an error after it (a
        # wrong second factor): the final answer wins.
        return Outcome.FAILURE
    if guard.declared is not None:
        if guard.declared is Outcome.SUCCESS:
            state.declared_success.add(req.endpoint or "")
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
        _warn_undeclared(state, req, response.status_code)
    return Outcome.FAILURE


#: Attempts answered below 400 with no success declared, per endpoint and
#: process, before the warning: a wrong password answered with the form is
#: one of them, so a few prove nothing.
UNDECLARED_EVIDENCE = 20


def _warn_undeclared(state: AppState, req: Request, status: int) -> None:
    endpoint = req.endpoint or req.path
    if endpoint in state.declared_success:
        return
    seen = state.undeclared_answers.get(endpoint, 0) + 1
    if seen > UNDECLARED_EVIDENCE:
        return
    state.undeclared_answers[endpoint] = seen
    if seen < UNDECLARED_EVIDENCE:
        return
    _warn_once(
        state,
        "%s answered %d to 20 attempts in this process and never declared a"
        " success: each counted as a FAILURE. Call lockout.succeeded() once the"
        " login is complete (Flask-Login's login_user() does it for you), or"
        " pass success=... to @lockout_on_failure; otherwise every login counts"
        " against the account. A view that really had 20 failures in a row and"
        " no success says nothing wrong: declare its successes and this warning"
        " never comes.",
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
            counted_spelling(kv),
            reservation.receipt,
            state.settings.policy_of(kv.key),
        )
        for kv, reservation in zip(guard.keys, guard.reservations, strict=True)
    ]
    # A success gives its failure back to the scope's surge count too.
    surge = (
        (guard.scope, state.surge_rules, not guard.device)
        if outcome is Outcome.SUCCESS and guard.surge_counted
        else None
    )
    try:
        state.storage.lockout_settle_all(
            settlements, state.settings.policy, guard.token, surge
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
        if not guard.device:
            _new_device_login(guard)


_DECISIONS = {Outcome.FAILURE: "failure", Outcome.SUCCESS: "success"}

#: Characters of a User-Agent handed to ``new_device_login``, at most.
USER_AGENT_MAX = 512


def _new_device_login(guard: Guard) -> None:
    """A success from a device without a valid cookie for the account."""
    if not signals.new_device_login.receivers:
        return
    account = next((kv.key for kv in guard.keys if kv.spelling), None)
    if account is None:
        return
    agent = request.headers.get("User-Agent", "")[:USER_AGENT_MAX]
    send(signals.new_device_login, account, user_agent=agent)


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
