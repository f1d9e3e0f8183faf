"""The keys an attempt counts on: the request's keys (a stacked
``@throttled``'s too), a known device's own buckets in their place, and
what the attempt asks of its scope's surge record."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from flask import Request

from .client_ip import current_client_network
from .device import COOKIE_NAME, device_nonce
from .errors import TooManyAttempts
from .keys import KeyValue, ParsedSpec, client_ip_key, logical_key
from .limits import Limit
from .policy import UNTYPED_SPELLING
from .request_state import request_state
from .state import AppState
from .storage.base import SurgeAsk


class DeferredLimit(NamedTuple):
    """A ``@throttled`` rate limit: its key specs (addresses first), scope and
    limits."""

    specs: tuple[ParsedSpec, ...]
    scope: str
    limits: Sequence[Limit]

    @property
    def reported(self) -> int:
        """How many of the keys (``ip`` ones, first) are the client's own
        allowance, which the ``RateLimit-*`` headers show: an account key's
        would tell anyone how others use that account."""
        return sum(1 for spec in self.specs if spec.source == "ip")

    def keys(
        self,
        state: AppState,
        req: Request,
        addresses_only: bool = False,
        device: str | None = None,
        device_known: bool = False,
    ) -> list[str]:
        """The request's keys, addresses first: a refused address costs no
        form parsing. A known device (``device``, the nonce of a valid
        cookie for the accounts read, found here unless ``device_known``)
        has its own allowance in place of the address's. Raises the 429 for
        a refusal this process knows."""
        if addresses_only and has_device_cookie(state, req):
            return []  # the device may stand in for the address
        specs = self.specs
        if addresses_only:
            specs = tuple(spec for spec in specs if spec.source == "ip")
        read = [kv for spec in specs for kv in spec.read(self.scope, req)]
        if not device_known and not addresses_only:
            device = device_of(state, req, self.scope, read)[1]
        refusals = state.refusals
        keys = []
        for kv in read:
            key = kv.key
            if device is not None and kv.spec.source == "ip":
                key = logical_key(self.scope, "device", device)
            if refusals:
                cached = refusals.retry_after(f"rl:{key}")
                if cached:
                    state.decided("rate_limited")
                    raise TooManyAttempts(cached)
            keys.append(key)
        return keys


def counted_spelling(kv: KeyValue) -> str:
    """The spelling storage counts ``kv``'s attempt under: the typed one,
    ``UNTYPED_SPELLING`` for an account key without one (so that its
    give-back, too, takes only what such attempts counted), none for an
    address."""
    if kv.spelling or not kv.spec.account_like:
        return kv.spelling
    return UNTYPED_SPELLING


def has_device_cookie(state: AppState, req: Request) -> bool:
    return state.device_cookies and COOKIE_NAME in req.cookies


def account_of(scope: str, keys: Sequence[KeyValue]) -> str | None:
    """The scope and exact spellings of the request's accounts, as device
    cookies bind them; None without an account key."""
    accounts = [kv for kv in keys if kv.spelling]
    if not accounts:
        return None
    return "\0".join([scope, *(f"{kv.key}\0{kv.spelling}" for kv in accounts)])


def device_of(
    state: AppState, req: Request, scope: str, keys: list[KeyValue]
) -> tuple[str | None, str | None]:
    """The request's account, and the nonce of a valid device cookie for it."""
    account = account_of(scope, keys)
    if account is None or not has_device_cookie(state, req):
        return account, None
    return account, device_nonce(account)


def device_keys(scope: str, keys: list[KeyValue], nonce: str) -> list[KeyValue]:
    """A known device's keys: its own bucket (``ip`` included) and one all
    devices of the account share."""
    accounts = [kv for kv in keys if kv.spelling]
    values = "|".join(kv.key.split(":", 2)[2] for kv in accounts)
    return [
        KeyValue(accounts[0].spec, logical_key(scope, "device", nonce), ""),
        KeyValue(accounts[0].spec, logical_key(scope, "devices", values), ""),
    ]


def surge_ask(
    state: AppState,
    req: Request,
    scope: str,
    known_device: bool,
    challenge: Callable[[], bool] | None,
) -> SurgeAsk | None:
    """What this attempt asks of the scope's surge record; None with
    ``LOCKOUT_SURGE`` off."""
    surge = state.settings.surge
    if not surge.enabled:
        return None
    passed = False
    if known_device or not state.surge_believed(scope):
        # No surge known here: the allowance still applies if one started
        # elsewhere; the address's and network's windows from the next
        # decision on, once this process has seen it.
        return SurgeAsk(scope, state.surge_rules, known_device, False)
    if challenge is not None:
        passed = bool(challenge())
        request_state(req)["challenge_passed"] = passed
    return SurgeAsk(
        scope,
        state.surge_rules,
        known_device,
        passed,
        logical_key(scope, "surge-ip", client_ip_key(req)),
        surge.limits,
        logical_key(scope, "surge-net", current_client_network(req)),
        surge.network_limits,
    )
