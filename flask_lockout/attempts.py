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
from typing import Any, NamedTuple

from flask import request
from werkzeug.wrappers import Response

from . import signals
from .device import COOKIE_NAME, device_nonce, issue_device_cookie
from .errors import StorageError, TooManyAttempts
from .keys import KeyValue, ParsedSpec, logical_key
from .limits import Limit, RateLimitResult
from .policy import DEFAULT_RESERVATION_SECONDS, Outcome, Reservation, reservation_token
from .request_state import request_state
from .state import AppState, current_state, send
from .storage.base import AttemptKey, Settlement

logger = logging.getLogger("flask_lockout")

ResponseTest = Callable[[Response], bool]


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
    #: The scope and exact spellings of the accounts, for a device cookie.
    account: str | None = None
    #: Set by ``lockout.succeeded()`` / ``failed()`` / Flask-Login.
    declared: Outcome | None = None
    #: True when a device cookie swapped the keys for the device's bucket.
    device: bool = False


# -- before the view ----------------------------------------------------------


def reserve(state: AppState, scope: str, specs: Sequence[ParsedSpec]) -> Guard:
    """Reserve one attempt on every key of the request, or raise the 429.

    1. Refusals this process already knows are answered at once, addresses
       first, so that a refused address costs no form parsing.
    2. The request's keys are read; a valid device cookie for the account
       swaps them for the device's own buckets.
    3. One round trip reserves an attempt on every key (with a stacked
       ``@throttled``'s rate limit in the same call).
    4. When any key refuses, what the others counted is given back.
    """
    pending: DeferredLimit | None = request_state().pop("pending_limit", None)
    known = bool(state.refusals)  # nothing known refused: nothing to look up
    if known:
        _refuse_known_addresses(state, scope, specs, pending)
    keys = [kv for spec in specs for kv in spec.read(scope)]
    account, device_keys = _device_buckets(state, scope, keys)
    if device_keys is not None:
        keys = device_keys
    if known:
        for kv in keys:
            _refuse_if_cached(state, kv.key, pending)
    token = reservation_token()
    answers = _reserve_in_storage(state, keys, token, pending)
    _refuse_if_any_refused(state, keys, answers, token)
    if device_keys is not None:
        return Guard(keys, token, answers, device=True)
    return Guard(keys, token, answers, account=account)


def _refuse_known_addresses(
    state: AppState,
    scope: str,
    specs: Sequence[ParsedSpec],
    pending: DeferredLimit | None,
) -> None:
    if pending is not None:
        pending.keys(state, addresses_only=True)
    if state.device_cookies and COOKIE_NAME in request.cookies:
        return  # a device may stand in for the address: read the account
    for spec in specs:
        if spec.source != "ip":
            break
        for kv in spec.read(scope):
            _refuse_if_cached(state, kv.key, pending)


def _device_buckets(
    state: AppState, scope: str, keys: list[KeyValue]
) -> tuple[str | None, list[KeyValue] | None]:
    """The scope and exact spellings of the request's accounts, and, for a
    device with a valid cookie for them, the device's keys: its own bucket
    (``ip`` included) and one all devices of the account share."""
    accounts = [kv for kv in keys if kv.spelling]
    if not accounts:
        return None, None
    account = "\0".join([scope, *(f"{kv.key}\0{kv.spelling}" for kv in accounts)])
    nonce = device_nonce(account) if state.device_cookies else None
    if nonce is None:
        return account, None
    values = "|".join(kv.key.split(":", 2)[2] for kv in accounts)
    return account, [
        KeyValue(accounts[0].spec, logical_key(scope, "device", nonce), ""),
        KeyValue(accounts[0].spec, logical_key(scope, "devices", values), ""),
    ]


def _reserve_in_storage(
    state: AppState,
    keys: list[KeyValue],
    token: str,
    pending: DeferredLimit | None,
) -> list[Reservation]:
    settings = state.settings
    policy = settings.policy
    attempts = [
        AttemptKey(kv.key, kv.spelling, settings.policy_of(kv.key)) for kv in keys
    ]
    if pending is None:
        return state.storage.lockout_reserve_all(
            attempts, policy, token, DEFAULT_RESERVATION_SECONDS
        )
    limit_keys = pending.keys(state)
    result, answers = state.storage.lockout_guard(
        limit_keys, pending.limits, attempts, policy, token, DEFAULT_RESERVATION_SECONDS
    )
    check_rate_limit(state, limit_keys, pending.limits, result)
    return answers


def _refuse_if_any_refused(
    state: AppState, keys: list[KeyValue], answers: list[Reservation], token: str
) -> None:
    refused = [(kv, a) for kv, a in zip(keys, answers, strict=True) if not a.granted]
    if not refused:
        return
    settings = state.settings
    granted = [
        Settlement(
            kv.key, Outcome.RELEASE, kv.spelling, a.receipt, settings.policy_of(kv.key)
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
            state.settings.policy_of(kv.key),
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
