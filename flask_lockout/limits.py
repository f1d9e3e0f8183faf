"""Parsing of rate limit strings such as ``"5/min;100/day"``."""

from __future__ import annotations

import re
from dataclasses import dataclass

_PERIODS = {
    "sec": 1,
    "second": 1,
    "min": 60,
    "minute": 60,
    "hour": 3600,
    "day": 86400,
}

_LIMIT = re.compile(
    r"^\s*(?P<count>\d+)\s*(?:/|per\s)\s*(?P<multiplier>\d+)?\s*(?P<unit>[a-z]+?)s?\s*$",
    re.IGNORECASE | re.ASCII,
)

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

    Periods are ``sec``, ``second``, ``min``, ``minute``, ``hour`` and ``day``,
    singular or plural, optionally preceded by a multiplier.

    :raises ValueError: when the string is not a single valid limit.

    >>> parse_limit("100/15min")
    Limit(count=100, period_seconds=900)
    """
    if not isinstance(text, str):
        raise ValueError(f"A rate limit must be a string, not {type(text).__name__}.")
    match = _LIMIT.match(text)
    unit = match and _PERIODS.get(match["unit"].lower())
    if match is None or unit is None:
        raise ValueError(
            f"Invalid rate limit {text!r}: expected COUNT/PERIOD such as '5/min',"
            " '100/15min' or '1000/day' (periods: sec, min, hour, day)."
        )
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
    """Parse one or more limits separated by ``;``: ``"5/min;100/day"``.

    :raises ValueError: when any part is invalid or the string is empty.

    >>> parse_limits("5/min;100/day")
    (Limit(count=5, period_seconds=60), Limit(count=100, period_seconds=86400))
    """
    if not isinstance(text, str):
        raise ValueError(f"A rate limit must be a string, not {type(text).__name__}.")
    parts = [part for part in text.split(";") if part.strip()]
    if not parts:
        raise ValueError(f"Invalid rate limit {text!r}: no limit given.")
    return tuple(parse_limit(part) for part in parts)
