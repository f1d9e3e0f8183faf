"""The Lua scripts of :mod:`.redis` and how to speak to them: loading them
(the guard assembled from the others), the arguments they take and the
replies they give, as text parsed here."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from importlib import resources

from ..errors import StorageError
from ..limits import RateLimitResult
from ..policy import LockoutConfig, Receipt, Reservation
from ..surge import SurgeRules, SurgeState
from .base import AttemptKey, Settlement

#: The Lua scripts shipped in ``storage/lua``.
SCRIPTS = ("lockout", "ratelimit", "surge", "guard", "throttle", "token")


def load_script(name: str) -> str:
    """The source of the script ``name``, as Redis runs it."""
    if name == "guard":
        # One script can't call another: the three bodies become functions.
        return "\n".join(
            [
                _as_function("rate_limit", _read_script("ratelimit")),
                _as_function("surge", _read_script("surge")),
                _as_function("lockout", _read_script("lockout")),
                _read_script("guard"),
            ]
        )
    if name in ("lockout", "ratelimit", "surge"):
        # Alone, they read the server time themselves.
        return "local now = nil\n" + _read_script(name)
    return _read_script(name)


def _read_script(name: str) -> str:
    return resources.files(__package__).joinpath(f"lua/{name}.lua").read_text("utf-8")


def _as_function(name: str, body: str) -> str:
    return f"local function {name}(KEYS, ARGV, now)\n{body}\nend"


@functools.lru_cache(maxsize=64)
def schedule_args(policy: LockoutConfig) -> tuple[bytes, ...]:
    """The lock schedule as the script reads it, encoded once a policy."""
    schedule = policy.lock_schedule
    values = [
        ms(policy.reset_after_seconds),
        ms(policy.base_lock_seconds),
        repr(float(policy.backoff_multiplier)),
        ms(policy.max_lock_seconds),
        ",".join(str(ms(s)) for s in schedule) if schedule else "",
    ]
    return tuple(str(value).encode() for value in values)


@functools.lru_cache(maxsize=64)
def window_args(policy: LockoutConfig) -> tuple[bytes, ...]:
    """A key's count and window as the script reads them."""
    start = "last" if policy.window_from_last_failure else "first"
    return (
        str(policy.max_failures).encode(),
        str(ms(policy.window_seconds)).encode(),
        start.encode(),
    )


def key_args(item: AttemptKey | Settlement, policy: LockoutConfig) -> list[object]:
    """One key's arguments: spelling, its count and window, receipt."""
    receipt = item.receipt if isinstance(item, Settlement) else ""
    return [item.spelling, *window_args(item.policy or policy), receipt]


def integers(reply: bytes | str) -> list[int]:
    """A script's reply: integers separated by spaces (one string parses
    faster than nested arrays of integers)."""
    return [int(word) for word in reply.split()]


def receipted(reply: bytes | str) -> tuple[list[int], list[Receipt]]:
    """A reservation's reply: its integers, and the receipts after them
    (``;``-separated, as text: they go back as they came, one use each)."""
    text = reply.decode("ascii") if isinstance(reply, bytes) else reply
    parts: list[Receipt] = list(text.split(";"))
    return integers(parts[0]), parts[1:]


def parse_reservations(
    numbers: Sequence[int], receipts: Sequence[Receipt]
) -> list[Reservation]:
    """The lockout script's reserve replies: granted, locked, retry seconds,
    for each key in turn, and the receipt that gives each back."""
    if len(numbers) != 3 * len(receipts):
        raise ValueError(f"{len(numbers)} numbers for {len(receipts)} receipts")
    return [
        Reservation(
            bool(numbers[3 * k]), bool(numbers[3 * k + 1]), numbers[3 * k + 2], receipt
        )
        for k, receipt in enumerate(receipts)
    ]


def answering(
    attempts: Sequence[AttemptKey], reservations: list[Reservation]
) -> list[Reservation]:
    """``reservations``, checked to answer every attempt once."""
    if len(reservations) != len(attempts):
        raise StorageError(
            f"Redis sent an unexpected reply: {len(reservations)} answers"
            f" for {len(attempts)} keys"
        )
    return reservations


@functools.lru_cache(maxsize=16)
def rules_args(rules: SurgeRules) -> tuple[str, ...]:
    return (
        str(rules.min_failures),
        repr(float(rules.factor)),
        str(ms(rules.cooldown_seconds)),
    )


def surge_state(text: str) -> SurgeState:
    """surge.lua's reply: "active failures threshold event refused retry_ms
    left_ms"."""
    active, failures, threshold, event, refused, retry_ms, left_ms = integers(text)
    return SurgeState(
        bool(active),
        failures,
        threshold,
        ("", "started", "ended")[event],
        bool(refused),
        retry_ms / 1000,
        left_ms / 1000,
    )


def rate_limit_result(numbers: Sequence[int]) -> RateLimitResult:
    allowed, remaining, retry_ms, count, reset_ms, window = numbers
    return RateLimitResult(
        bool(allowed), remaining, retry_ms / 1000, count, reset_ms / 1000, window
    )


def is_noscript(result: object) -> bool:
    # redis-py and valkey both name the error class NoScriptError.
    return type(result).__name__ == "NoScriptError"


def ms(seconds: float) -> int:
    return math.ceil(seconds * 1000)
