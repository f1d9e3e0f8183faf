"""Rate limits: parsing ``"5/min;100/day"`` and the sliding-window decision.

Pure functions, no I/O: the memory store applies them directly and
``storage/lua/ratelimit.lua`` applies the same arithmetic on Redis.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

#: Period names in seconds, singular; a plural ``s`` is accepted too. A month
#: and a year are 30 and 360 days, as the ``limits`` library counts them.
_PERIODS = {
    "sec": 1,
    "second": 1,
    "min": 60,
    "minute": 60,
    "hour": 3600,
    "day": 86400,
    "month": 30 * 86400,
    "year": 360 * 86400,
}
# The grammar of the ``limits`` library (Flask-Limiter's strings): "per"
# needs no spaces around it, and a multiplier may stand before the unit.
_LIMIT = re.compile(
    r"^\s*(?P<count>\d+)\s*(?:/|per)\s*(?P<multiplier>\d+)?\s*(?P<unit>[a-z]+?)s?\s*$",
    re.IGNORECASE | re.ASCII,
)
# What separates several limits in one string.
_SEPARATOR = re.compile(r"[;,|]")
# Two limits run together, for the near-miss error: "5/min 100/day".
_TWO_LIMITS = re.compile(
    r"\d+\s*(?:/|per)\s*\d*\s*[a-z]+\b\D+?\d+\s*(?:/|per)", re.IGNORECASE | re.ASCII
)
_EXPECTED = (
    "expected COUNT/PERIOD such as '5/min', '100/15min', '1000/day' or"
    " '10 per hour' (periods: sec, min, hour, day, month, year, singular or"
    " plural)"
)
_SEPARATED = "separate several limits with ';', ',' or '|', as in '5/min;100/day'"

#: Bounds that keep a limit meaningful and its storage small.
MAX_COUNT = 10**9
MAX_PERIOD_SECONDS = 366 * 86400


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``count`` hits per ``period_seconds``.

    >>> Limit(5, 60)
    Limit(count=5, period_seconds=60)
    >>> str(Limit(100, 900))
    '100/15minute'
    """

    count: int
    period_seconds: int

    def __str__(self) -> str:
        """The limit as :func:`parse_limit` reads it: ``"100/15minute"``."""
        for name, unit in (("day", 86400), ("hour", 3600), ("minute", 60)):
            if self.period_seconds % unit == 0:
                multiple = self.period_seconds // unit
                return f"{self.count}/{multiple if multiple > 1 else ''}{name}"
        return f"{self.count}/{self.period_seconds}second"


def parse_limit(text: str) -> Limit:
    """Parse one limit such as ``"5/min"``, ``"100/15min"`` or ``"10 per hour"``.

    Periods are ``sec``, ``second``, ``min``, ``minute``, ``hour``, ``day``,
    ``month`` (30 days) and ``year`` (360 days), singular or plural,
    optionally preceded by a multiplier: every spelling of the ``limits``
    library that Flask-Limiter uses (``"10 per 2 minutes"``) reads the same.

    :raises ValueError: when the string is not a single valid limit.

    >>> parse_limit("100/15min")
    Limit(count=100, period_seconds=900)
    """
    if not isinstance(text, str):
        raise ValueError(f"A rate limit must be a string, not {type(text).__name__}.")
    match = _LIMIT.match(text)
    unit = match and _PERIODS.get(match["unit"].lower())
    if match is None or unit is None:
        if _SEPARATOR.search(text) or _TWO_LIMITS.search(text):
            raise ValueError(
                f"Invalid rate limit {text!r}: one limit expected here; {_EXPECTED}."
                f" Where several are accepted, {_SEPARATED}."
            )
        raise ValueError(f"Invalid rate limit {text!r}: {_EXPECTED}.")
    count = int(match["count"])
    period = int(match["multiplier"] or 1) * unit
    if not 1 <= count <= MAX_COUNT:
        raise ValueError(f"Invalid rate limit {text!r}: the count must be 1 or more.")
    if not 1 <= period <= MAX_PERIOD_SECONDS:
        raise ValueError(
            f"Invalid rate limit {text!r}: the period must be between 1 second"
            " and 366 days."
        )
    return Limit(count, period)


def parse_limits(text: str) -> tuple[Limit, ...]:
    """Parse one or more limits separated by ``;``, ``,`` or ``|``:
    ``"5/min;100/day"``, or Flask-Limiter's ``"10/minute, 100/hour"``.

    :raises ValueError: when any part is invalid or the string is empty.

    >>> parse_limits("5/min;100/day")
    (Limit(count=5, period_seconds=60), Limit(count=100, period_seconds=86400))
    >>> parse_limits("10 per minute, 100 per hour") == parse_limits("10/min|100/hour")
    True
    """
    if not isinstance(text, str):
        raise ValueError(f"A rate limit must be a string, not {type(text).__name__}.")
    parts = [part for part in _SEPARATOR.split(text) if part.strip()]
    if not parts:
        raise ValueError(f"Invalid rate limit {text!r}: no limit given.")
    limits = []
    for part in map(str.strip, parts):
        try:
            limits.append(parse_limit(part))
        except ValueError as exc:
            if _TWO_LIMITS.search(part):
                where = "" if len(parts) == 1 else f" {part!r}"
                raise ValueError(
                    f"Invalid rate limit {text!r}:{where} reads as more than one"
                    f" limit; {_SEPARATED}."
                ) from None
            if len(parts) > 1:
                raise ValueError(f"{exc} (in {text!r})") from None
            raise
    return tuple(limits)


def as_limits(limit: Limit | Sequence[Limit] | str) -> tuple[Limit, ...]:
    """Accept one :class:`Limit`, several, or a limit string."""
    if isinstance(limit, str):
        return parse_limits(limit)
    if isinstance(limit, Limit):
        return (limit,)
    limits = tuple(limit)
    if not limits or not all(isinstance(item, Limit) for item in limits):
        raise ValueError("Expected one or more Limit values.")
    return limits


class WindowDecision(NamedTuple):
    allowed: bool
    remaining: int
    retry_after: float
    reset_after: float


def sliding_window_decision(
    limit: Limit, current: int, previous: int, elapsed: float
) -> WindowDecision:
    """Decide one hit of a sliding-window counter from its two fixed windows.

    The previous window's count is weighted by how much of it the sliding
    window ending now still covers: two integers per key approximate a log.

    :param current: hits counted in the current fixed window so far.
    :param previous: hits counted in the previous fixed window.
    :param elapsed: seconds since the current window began, in ``[0, period)``.
    """
    count, period = limit.count, limit.period_seconds
    weighted = previous * (period - elapsed) / period + current
    # Until the current window ends: what ``RateLimit-Reset`` reports.
    window_left = period - elapsed
    if weighted + 1 <= count:
        remaining = math.floor(count - 1 - weighted + 1e-9)
        return WindowDecision(True, max(remaining, 0), 0.0, window_left)
    if current + 1 > count:
        # Wait for the next window, then for this window's hits to decay.
        wait = window_left + period * (1 - (count - 1) / current)
    else:
        # The previous window's weight must fall to what is left.
        wait = period * (1 - (count - 1 - current) / previous) - elapsed
    wait = max(wait, 0.001)
    return WindowDecision(False, 0, wait, wait)


class _Verdict(NamedTuple):
    allowed: bool
    remaining: int
    retry_after: float


class RateLimitResult(_Verdict):
    """The answer to one rate-limited hit: ``(allowed, remaining, retry_after)``.

    >>> from flask_lockout import SlidingWindowStore
    >>> allowed, remaining, retry_after = SlidingWindowStore().hit("k", "2/minute")
    >>> allowed, remaining, retry_after
    (True, 1, 0.0)

    ``retry_after`` is in seconds (0 when allowed). Beyond the tuple, ``limit``
    is the count of the deciding limit, ``reset_after`` the seconds
    ``RateLimit-Reset`` reports (the time left in the current window; on a
    refusal, the same wait as ``retry_after``), and ``window`` the position
    of the deciding window among keys x limits (key-major).
    """

    limit: int
    reset_after: float
    window: int

    def __new__(
        cls,
        allowed: bool,
        remaining: int,
        retry_after: float,
        limit: int = 0,
        reset_after: float = 0.0,
        window: int = 0,
    ) -> RateLimitResult:
        result = super().__new__(cls, allowed, remaining, retry_after)
        result.limit = limit
        result.reset_after = reset_after
        result.window = window
        return result

    def __repr__(self) -> str:
        return (
            f"RateLimitResult(allowed={self.allowed}, remaining={self.remaining},"
            f" retry_after={self.retry_after}, limit={self.limit},"
            f" reset_after={self.reset_after}, window={self.window})"
        )


def combine(
    limits: Sequence[Limit],
    decisions: Sequence[WindowDecision],
    reported: int | None = None,
) -> RateLimitResult:
    """One result for several windows: refused if any refuses. An allowed
    hit reports the tightest of the first ``reported`` windows (all when
    None), with limit 0 when there are none."""
    refused = [i for i, d in enumerate(decisions) if not d.allowed]
    if refused:
        index = max(refused, key=lambda i: decisions[i].retry_after)
        wait = decisions[index].retry_after
        return RateLimitResult(False, 0, wait, limits[index].count, wait, index)
    shown = decisions if reported is None else decisions[:reported]
    if not shown:
        return RateLimitResult(True, 0, 0.0, 0, 0.0, 0)
    remaining, index = min((d.remaining, i) for i, d in enumerate(shown))
    return RateLimitResult(
        True, remaining, 0.0, limits[index].count, decisions[index].reset_after, index
    )
