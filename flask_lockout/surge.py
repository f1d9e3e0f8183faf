"""Surge defence: endpoint-wide failure counts per scope, as pure decisions.

Per-key counts stop one attacker at one account. Credential stuffing and
password spraying try each account once or twice from ever new addresses:
no key trips, but the scope as a whole sees far more failures a minute
than usual. One small record per scope (the same size whatever the attack)
keeps this minute's counts and the scope's usual rates; the memory store
decides with :class:`SurgeRecord`, and ``storage/lua/surge.lua`` mirrors it
on Redis.

- A surge starts when a minute's failures exceed both ``min_failures`` and
  ``factor`` times the usual failures a minute: a moving average with a
  time constant of one hour, at most :data:`DAY_BOUND` times the average
  of the day (a moving average with a time constant of a day). Minutes in
  a surge are left out, and the day's bound keeps an attack that ramps up
  slowly, just under the bar, from raising the bar with it. A surge lasts
  until failures and attempts the allowance refused together stay at or
  below the threshold for ``cooldown_seconds``.
- During a surge an attempt from a device without a cookie for the account
  (``exempt`` false) must fit a scope-wide allowance: :data:`PER_SUCCESS`
  times the usual successes a minute from such devices outside surges (an
  attack with leaked passwords that fail cannot raise it), at least
  :data:`MIN_ALLOWANCE` a minute, spread over the minute so that a burst
  at its start does not take it all. (The per-address and per-network
  surge limits are ordinary rate-limit keys; their refusals do not keep a
  surge on, so one address cannot.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

#: Seconds in the counting period.
MINUTE = 60.0
#: One finished minute's weight in the usual rates: an hour's moving average.
USUAL_WEIGHT = 1 / 60
#: Its weight in the day's average.
DAY_WEIGHT = 1 / 1440
#: The usual failures a minute count at most this many times the day's.
DAY_BOUND = 3
#: Attempts a minute allowed per usual success from a device without a
#: cookie: room for typos.
PER_SUCCESS = 2
#: Attempts a minute from devices without a cookie that a surge always lets
#: through, scope-wide, however quiet the scope usually is.
MIN_ALLOWANCE = 10
#: Minutes after its last change that a record is kept: its usual rates have
#: faded to nothing by then.
KEEP_MINUTES = 360


class SurgeRules(NamedTuple):
    """When a surge starts and ends (``LOCKOUT_SURGE_*``)."""

    min_failures: int = 60
    factor: float = 5.0
    cooldown_seconds: float = 600.0


class SurgeState(NamedTuple):
    """A scope's surge as a decision or a status read sees it.

    ``event`` is ``"started"`` or ``"ended"`` for the one decision that saw
    the surge begin or end (the signal is sent once, by its process), else
    ``""``. ``retry_after`` is set when the allowance refused the attempt;
    ``seconds_left`` is how long the surge lasts if nothing keeps it on.

    >>> from flask_lockout import SurgeState
    >>> seen = SurgeState(active=True, failures=75, threshold=60)
    >>> seen.active and seen.failures > seen.threshold
    True
    """

    active: bool
    failures: int
    threshold: int
    event: str = ""
    refused: bool = False
    retry_after: float = 0.0
    seconds_left: float = 0.0


@dataclass(slots=True)
class SurgeRecord:
    """One scope's counts; times in the store's clock (seconds)."""

    #: The minute the counts below belong to (0: none yet).
    minute: int = 0
    failures: int = 0
    #: Attempts the allowance refused this minute.
    refused: int = 0
    #: Attempts from devices without a cookie the allowance let through.
    new_devices: int = 0
    #: Successes from devices without a cookie.
    new_successes: int = 0
    usual_failures: float = 0.0
    daily_failures: float = 0.0
    usual_new_successes: float = 0.0
    #: Until when the failures seen keep the surge on.
    hot_until: float = 0.0
    #: Until when an operator's surge lasts.
    manual_until: float = 0.0
    #: Whether a surge was on at the last decision (to see it start or end).
    on: bool = False

    def roll(self, now: float) -> None:
        """Move to the minute of ``now``, folding the finished minute into the
        usual rates unless it was spent in a surge."""
        minute = math.floor(now / MINUTE)
        if minute == self.minute:
            return
        if self.minute:
            if not self.on:
                self.usual_failures += (
                    self.failures - self.usual_failures
                ) * USUAL_WEIGHT
                self.daily_failures += (self.failures - self.daily_failures) * (
                    DAY_WEIGHT
                )
                self.usual_new_successes += (
                    self.new_successes - self.usual_new_successes
                ) * USUAL_WEIGHT
            # Minutes without a single attempt count as quiet ones.
            quiet = min(max(minute - self.minute - 1, 0), KEEP_MINUTES)
            self.usual_failures *= (1 - USUAL_WEIGHT) ** quiet
            self.daily_failures *= (1 - DAY_WEIGHT) ** quiet
            self.usual_new_successes *= (1 - USUAL_WEIGHT) ** quiet
        self.minute = minute
        self.failures = self.refused = 0
        self.new_devices = self.new_successes = 0

    def threshold(self, rules: SurgeRules) -> int:
        """Failures a minute above which the scope is under a surge."""
        usual = min(self.usual_failures, DAY_BOUND * self.daily_failures)
        return max(rules.min_failures, math.floor(rules.factor * usual))

    def allowance(self) -> int:
        """Attempts a minute from devices without a cookie during a surge."""
        return max(MIN_ALLOWANCE, math.ceil(PER_SUCCESS * self.usual_new_successes))

    def active(self, now: float) -> bool:
        return now < self.hot_until or now < self.manual_until

    def check(self, rules: SurgeRules, now: float, exempt: bool) -> SurgeState:
        """Before a reservation: whether a surge is on, and for an attempt
        that is not ``exempt``, whether the allowance has room by now: it
        opens evenly over the minute, one attempt at a time."""
        self.roll(now)
        event = self._transition(now)
        if self.on and not exempt:
            allowance = self.allowance()
            elapsed = now - self.minute * MINUTE
            if self.new_devices >= math.floor(allowance * elapsed / MINUTE) + 1:
                self.refused += 1
                self._heat(rules, now)
                next_slot = self.new_devices * MINUTE / allowance - elapsed
                wait = min(max(next_slot, 0.001), MINUTE - elapsed)
                return self._state(rules, now, event, refused=True, retry_after=wait)
        return self._state(rules, now, event)

    def count(self, rules: SurgeRules, now: float, new_device: bool) -> SurgeState:
        """After a granted reservation (a failure until it is given back)."""
        self.roll(now)
        self.failures += 1
        if new_device:
            self.new_devices += 1
        self._heat(rules, now)
        return self._state(rules, now, self._transition(now))

    def succeeded(self, now: float, new_device: bool) -> None:
        """A success gives its reservation's failure back (in its minute)."""
        self.roll(now)
        self.failures = max(0, self.failures - 1)
        if new_device:
            self.new_successes += 1

    def start(self, rules: SurgeRules, now: float, seconds: float) -> SurgeState:
        """An operator's surge, for ``seconds``."""
        self.roll(now)
        self.manual_until = now + seconds
        return self._state(rules, now, self._transition(now))

    def end(self, rules: SurgeRules, now: float) -> SurgeState:
        """End the surge now, whoever started it (a surge that goes on
        starts again)."""
        self.roll(now)
        self.manual_until = self.hot_until = 0.0
        return self._state(rules, now, self._transition(now))

    def status(self, rules: SurgeRules, now: float) -> SurgeState:
        self.roll(now)
        return self._state(rules, now, "", active=self.active(now))

    def expires(self, now: float) -> float:
        """When the record may be forgotten."""
        return max(now + KEEP_MINUTES * MINUTE, self.hot_until, self.manual_until)

    def _heat(self, rules: SurgeRules, now: float) -> None:
        if self.failures + self.refused > self.threshold(rules):
            self.hot_until = max(self.hot_until, now + rules.cooldown_seconds)
            if rules.cooldown_seconds <= 0:
                self.hot_until = max(self.hot_until, (self.minute + 1) * MINUTE)

    def _transition(self, now: float) -> str:
        active = self.active(now)
        if active == self.on:
            return ""
        self.on = active
        return "started" if active else "ended"

    def _state(
        self,
        rules: SurgeRules,
        now: float,
        event: str,
        refused: bool = False,
        retry_after: float = 0.0,
        active: bool | None = None,
    ) -> SurgeState:
        return SurgeState(
            self.on if active is None else active,
            self.failures,
            self.threshold(rules),
            event,
            refused,
            retry_after,
            max(self.hot_until, self.manual_until, now) - now,
        )
