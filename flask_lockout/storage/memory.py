"""In-process storage: thread-safe, bounded, driven by an injectable clock."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence

from ..errors import StorageError
from ..limits import Limit, RateLimitResult, combine, sliding_window_decision
from ..policy import (
    LockoutConfig,
    LockRecord,
    LockState,
    Outcome,
    Pending,
    Reservation,
)
from ..surge import SurgeRecord, SurgeRules, SurgeState
from .base import (
    AttemptAnswer,
    AttemptAsk,
    AttemptKey,
    Settlement,
    Storage,
    ThrottleCount,
    attempt_in_steps,
    key_part,
)

logger = logging.getLogger("flask_lockout")

#: Default bound on the number of keys the memory store holds.
DEFAULT_MAX_KEYS = 100_000

#: Scopes with a surge record, at most: scopes are the app's own names.
MAX_SURGE_SCOPES = 10_000

#: The identifier of the shared bucket that new keys use once protected
#: state fills the store (followed by ``:<slot>`` for a client's network).
OVERFLOW = "~overflow"

#: Overflow buckets per kind of key, at most. Networks are spread over them
#: by a per-process hash: a flood from many networks cannot grow the store
#: without bound, and cannot aim at another network's bucket.
OVERFLOW_BUCKETS = 4096


class _Counter:
    """A throttle counter, a token, a rate-limit window or a lockout key's
    lone failure (its time), with its expiry."""

    __slots__ = ("value", "expires_at")

    def __init__(self, value: object, expires_at: float) -> None:
        self.value = value
        self.expires_at = expires_at


#: Attempts in flight that can still be given back, at most. They are kept
#: apart from the records, so a tracked key costs nothing for them; past the
#: bound the oldest is forgotten, and that attempt simply stays counted.
MAX_PENDING = 10_000

#: A full store sweeps out expired keys at most this often (in its clock's
#: seconds): a sweep reads every key, so it must not run on every request.
SWEEP_INTERVAL = 1.0

_Stored = LockRecord | _Counter

#: Internal keys are ``<tag>{<identifier>``, shorter than ``storage_key``'s
#: layout: a flood fills the store with them. ``key_part`` leaves no brace in
#: an identifier, so the one ``{`` parts the tag from it.
_LOCK = "l{"
_THROTTLE = "t{"
_TOKEN = "k{"
_RATE = "r"


def _key(tag: str, identifier: str) -> str:
    return tag + key_part(identifier)


def _rate_tag(limit: Limit) -> str:
    return f"{_RATE}{limit.count}/{limit.period_seconds}{{"


def _compact(record: LockRecord) -> _Stored:
    """``record``, or for a lone failure (what a flood of fresh keys leaves)
    just its time, in under half the bytes; :func:`_expand` restores it."""
    if (
        record.failures == 1
        and record.total == 1
        and not record.lock_number
        and record.locked_until == 0.0
        and record.last_failure == record.window_start
        and not record.spellings
        and record.given_back_until == 0.0
    ):
        return _Counter(record.window_start, record.expires_at)
    return record


def _expand(stored: _Stored | None) -> LockRecord:
    if isinstance(stored, LockRecord):
        return stored
    if stored is None:
        return LockRecord()
    at = stored.value
    assert isinstance(at, int | float)
    # Positional: twice as fast as keywords. failures, window_start,
    # lock_number, locked_until, last_failure, total, spellings,
    # given_back_until, expires_at.
    return LockRecord(1, at, 0, 0.0, at, 1, None, 0.0, stored.expires_at)


class MemoryStorage(Storage):
    """Storage in this process's memory; the default (``memory://``).

    :param clock: returns seconds; defaults to :func:`time.monotonic`. Tests
        pass a clock they can step.
    :param max_keys: the most keys held. Past it, expired keys go first, then
        the least recently used rate-limit windows and throttle counters.
        Lockout state (failures, locks, probation) and
        tokens are never evicted: when they fill the store, new keys share
        an overflow bucket per kind and per client network, which locks
        them together quickly rather than leaving them unguarded, and the
        store logs it once.
    :param network: returns the network of the client being decided for
        (``"203.0.113.0/24"``), or ``""`` when there is none. Overflow
        buckets are partitioned by it, so a flood locks out its own network
        and not every new visitor. The Flask extension sets it (IPv4 /24,
        IPv6 /48); without it every new key shares one bucket per kind.

    It runs no thread: expired keys are dropped when met or when room is needed.
    Each worker process has its own; use Redis to share state between them.

    >>> from flask_lockout import LoginLockout
    >>> storage = MemoryStorage(max_keys=10_000)
    >>> LoginLockout(storage=storage).record_failure("login:alice")
    (False, 0)
    >>> len(storage)
    1
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = DEFAULT_MAX_KEYS,
        prefix: str = "lockout",
        network: Callable[[], str] | None = None,
    ) -> None:
        if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
            raise ValueError(
                f"max_keys must be a whole number of at least 1, not {max_keys!r}."
            )
        self.clock = clock
        self.max_keys = max_keys
        self.prefix = prefix
        self.network = network
        self._lock = threading.Lock()
        #: Lockout state and tokens: never evicted while they live. Kept
        #: apart from the counters, whose churn would keep regrowing its table.
        self._held: dict[str, _Stored] = {}
        #: Rate-limit windows and throttle counters, least recently used first:
        #: the only keys evicted while they live. Holding the values too, a
        #: counter costs one table entry rather than two.
        self._plain: OrderedDict[str, _Counter] = OrderedDict()
        self._next_sweep = -math.inf
        #: (storage key, token) -> (expires, what giving the attempt back needs)
        self._pending: OrderedDict[tuple[str, str], tuple[float, Pending]] = (
            OrderedDict()
        )
        #: True once new keys had to share the overflow bucket.
        self.overflowed = False
        #: One record per scope: scopes are the app's own names, and a
        #: flood of fresh addresses cannot add one.
        self._surges: dict[str, tuple[float, SurgeRecord]] = {}

    def __len__(self) -> int:
        return len(self._held) + len(self._plain)

    # -- bounded key space --------------------------------------------------

    def _get_held(self, key: str, now: float) -> _Stored | None:
        stored = self._held.get(key)
        if stored is not None and stored.expires_at <= now:
            del self._held[key]
            return None
        return stored

    def _get_plain(self, key: str, now: float) -> _Counter | None:
        stored = self._plain.get(key)
        if stored is None:
            return None
        if stored.expires_at <= now:
            del self._plain[key]
            return None
        self._plain.move_to_end(key)
        return stored

    def _slot(self, tag: str, identifier: str, plain: bool, now: float) -> str:
        """The key of ``identifier`` if it exists or room can be made for it,
        else the shared overflow key of its kind."""
        skey = _key(tag, identifier)
        if skey in (self._plain if plain else self._held) or self._make_room(now):
            return skey
        if not self.overflowed:
            self.overflowed = True
            logger.warning(
                "The memory store is full of protected state (%d keys): new keys"
                " now share an overflow bucket per client network (IPv4 /24,"
                " IPv6 /48) and lock together, so a flood locks out its own"
                " network. Raise LOCKOUT_MEMORY_MAX_KEYS or use Redis.",
                self.max_keys,
            )
        return self._overflow(tag)

    def _overflow(self, tag: str) -> str:
        """The overflow bucket of the client being decided for."""
        network = self.network() if self.network is not None else ""
        if not network:
            return _key(tag, OVERFLOW)
        return _key(tag, f"{OVERFLOW}:{hash(network) % OVERFLOW_BUCKETS}")

    def _make_room(self, now: float) -> bool:
        if len(self) < self.max_keys:
            return True
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_INTERVAL
            table: dict[str, _Stored] | OrderedDict[str, _Counter]
            for table in (self._held, self._plain):
                for key in [k for k, v in table.items() if v.expires_at <= now]:
                    del table[key]
        while len(self) >= self.max_keys and self._plain:
            self._plain.popitem(last=False)  # the least recently used
        return len(self) < self.max_keys

    def _put_held(self, key: str, stored: _Stored, now: float) -> None:
        if stored.expires_at <= now:
            self._held.pop(key, None)
        else:
            self._held[key] = stored

    def _put_plain(self, key: str, stored: _Counter, now: float) -> None:
        if stored.expires_at <= now:
            self._plain.pop(key, None)
        else:
            self._plain[key] = stored
            self._plain.move_to_end(key)

    # -- login lockout ------------------------------------------------------

    def _record(
        self, key: str, policy: LockoutConfig, now: float
    ) -> tuple[str, LockRecord]:
        skey = self._slot(_LOCK, key, False, now)
        record = _expand(self._get_held(skey, now))
        record.refresh(policy, now)
        return skey, record

    def _save(
        self, skey: str, record: LockRecord, policy: LockoutConfig, now: float
    ) -> None:
        record.expires_at = record.lasts_until(policy) if record.protected() else now
        self._put_held(skey, _compact(record), now)

    def lockout_reserve_all(
        self,
        attempts: Sequence[AttemptKey],
        policy: LockoutConfig,
        token: str,
        ttl: float,
    ) -> list[Reservation]:
        answers = []
        # Keys of one attempt that share an overflow bucket count it once.
        reserved: dict[str, Reservation] = {}
        with self._lock:
            now = self.clock()
            for key, spelling, own_policy in attempts:
                rules = own_policy or policy
                skey, record = self._record(key, rules, now)
                if skey in reserved:
                    answers.append(reserved[skey])
                    continue
                answer, pending = record.reserve(rules, now, spelling)
                answers.append(reserved.setdefault(skey, answer))
                if pending is not None:
                    if len(self._pending) >= MAX_PENDING:
                        self._pending.popitem(last=False)
                    self._pending[skey, token] = (now + ttl, pending)
                self._save(skey, record, rules, now)
        return answers

    def lockout_settle_all(
        self,
        settlements: Sequence[Settlement],
        policy: LockoutConfig,
        token: str,
        surge: tuple[str, SurgeRules, bool] | None = None,
    ) -> None:
        with self._lock:
            now = self.clock()
            for key, outcome, spelling, _, own_policy in settlements:
                rules = own_policy or policy
                if outcome is Outcome.FAILURE:
                    continue
                if outcome is Outcome.CLEAR:
                    self._held.pop(_key(_LOCK, key), None)
                    continue
                skey, record = self._record(key, rules, now)
                found = self._pending.pop((skey, token), None)
                pending = found[1] if found is not None and found[0] > now else None
                if outcome is Outcome.SUCCESS:
                    record.succeed(pending, spelling, now)
                elif outcome is Outcome.UNKNOWN:
                    record.release(pending, now, rules)
                else:
                    record.release(pending, now)
                self._save(skey, record, rules, now)
        if surge is not None:
            self.surge_succeeded(*surge)

    def lockout_failure(self, key: str, policy: LockoutConfig) -> LockState:
        with self._lock:
            now = self.clock()
            skey, record = self._record(key, policy, now)
            record.count_failure(policy, now, "")
            self._save(skey, record, policy, now)
            return record.state(now)

    def lockout_status(self, key: str, policy: LockoutConfig) -> LockState:
        with self._lock:
            now = self.clock()
            stored = self._held.get(_key(_LOCK, key))
            if stored is None and self.overflowed:
                stored = self._held.get(self._overflow(_LOCK))
            if stored is None or stored.expires_at <= now:
                return LockState(False, 0)
            record = _expand(stored)
            if now >= record.state_expires(policy):
                return LockState(False, 0)
            return record.state(now)

    def lockout_reset(self, key: str) -> None:
        with self._lock:
            self._held.pop(_key(_LOCK, key), None)

    def lockout_unlock(self, key: str, policy: LockoutConfig) -> None:
        with self._lock:
            now = self.clock()
            skey, record = self._record(key, policy, now)
            record.unlock(now)
            self._save(skey, record, policy, now)

    def lockout_keys(self) -> Iterator[str]:
        with self._lock:
            found = [k for k in self._held if k.startswith(_LOCK)]
        for skey in found:
            yield skey[len(_LOCK) :]

    # -- fixed-window throttle ----------------------------------------------

    def throttle_status(self, key: str) -> ThrottleCount:
        with self._lock:
            now = self.clock()
            counter = self._plain.get(_key(_THROTTLE, key))
            if counter is None or counter.expires_at <= now:
                return ThrottleCount(0, 0.0)
            assert isinstance(counter.value, int)
            return ThrottleCount(counter.value, counter.expires_at - now)

    def throttle_hit(self, key: str, window_seconds: float) -> ThrottleCount:
        with self._lock:
            now = self.clock()
            skey = self._slot(_THROTTLE, key, True, now)
            counter = self._get_plain(skey, now)
            count = counter.value if counter is not None else None
            if counter is None or not isinstance(count, int):
                counter, count = _Counter(0, now + window_seconds), 0
            counter.value = count + 1
            self._put_plain(skey, counter, now)
            return ThrottleCount(count + 1, counter.expires_at - now)

    def throttle_reset(self, key: str) -> None:
        with self._lock:
            self._plain.pop(_key(_THROTTLE, key), None)

    # -- sliding-window rate limit ------------------------------------------

    def rate_limit_hit_many(
        self,
        keys: Sequence[str],
        limits: Sequence[Limit],
        reported: int | None = None,
    ) -> RateLimitResult:
        every = [limit for _key in keys for limit in limits]
        with self._lock:
            now = self.clock()
            windows = []
            for key, limit in ((k, lim) for k in keys for lim in limits):
                skey = self._slot(_rate_tag(limit), key, True, now)
                period = limit.period_seconds
                index = math.floor(now / period)
                stored = self._get_plain(skey, now)
                current = previous = 0
                if stored is not None and isinstance(stored.value, tuple):
                    stored_index, stored_current, stored_previous = stored.value
                    if stored_index == index:
                        current, previous = stored_current, stored_previous
                    elif stored_index == index - 1:
                        previous = stored_current
                elapsed = now - index * period
                decision = sliding_window_decision(limit, current, previous, elapsed)
                windows.append((skey, index, current, previous, decision))
            shown = None if reported is None else reported * len(limits)
            result = combine(every, [w[4] for w in windows], shown)
            if result.allowed:
                for (skey, index, current, previous, _), limit in zip(
                    windows, every, strict=True
                ):
                    expires_at = (index + 2) * limit.period_seconds
                    window = _Counter((index, current + 1, previous), expires_at)
                    self._put_plain(skey, window, now)
            return result

    def rate_limit_reset(self, key: str | None = None) -> None:
        with self._lock:
            doomed = [k for k in self._plain if k.startswith(_RATE)]
            if key is not None:
                # Any limit's window: the identifier follows the only brace.
                tail = _key("{", key)
                doomed = [k for k in doomed if k.endswith(tail)]
            for skey in doomed:
                del self._plain[skey]

    # -- single-use tokens --------------------------------------------------

    def token_put(self, token_hash: str, subject: str, ttl: float) -> None:
        with self._lock:
            now = self.clock()
            skey = _key(_TOKEN, token_hash)
            if skey not in self._held and not self._make_room(now):
                raise StorageError("The memory store is full: no room for a token.")
            # A pending token must not be evicted before its TTL: protected.
            self._put_held(skey, _Counter(subject, now + ttl), now)

    def token_take(self, token_hash: str) -> str | None:
        with self._lock:
            now = self.clock()
            token = self._held.pop(_key(_TOKEN, token_hash), None)
            if (
                isinstance(token, _Counter)
                and token.expires_at > now
                and isinstance(token.value, str)
            ):
                return token.value
            return None

    # -- administration -----------------------------------------------------

    def clear(self) -> None:
        with self._lock:
            self._held.clear()
            self._plain.clear()
            self._pending.clear()
            self._surges.clear()
            self.overflowed = False

    # -- surge defence --------------------------------------------------------

    def lockout_attempt(self, ask: AttemptAsk) -> AttemptAnswer:
        return attempt_in_steps(self, ask)

    def _surge(self, scope: str, now: float) -> SurgeRecord:
        found = self._surges.get(scope)
        if found is None or found[0] <= now:
            if len(self._surges) >= MAX_SURGE_SCOPES:
                self._surges = {k: v for k, v in self._surges.items() if v[0] > now}
            if len(self._surges) >= MAX_SURGE_SCOPES:
                raise StorageError("too many surge scopes in one memory store")
            record = SurgeRecord()
        else:
            record = found[1]
        self._surges[scope] = (record.expires(now), record)
        return record

    def surge_check(self, scope: str, rules: SurgeRules, exempt: bool) -> SurgeState:
        with self._lock:
            now = self.clock()
            return self._surge(scope, now).check(rules, now, exempt)

    def surge_count(
        self, scope: str, rules: SurgeRules, new_device: bool
    ) -> SurgeState:
        with self._lock:
            now = self.clock()
            return self._surge(scope, now).count(rules, now, new_device)

    def surge_succeeded(self, scope: str, rules: SurgeRules, new_device: bool) -> None:
        with self._lock:
            now = self.clock()
            self._surge(scope, now).succeeded(now, new_device)

    def surge_status(self, scope: str, rules: SurgeRules) -> SurgeState:
        with self._lock:
            now = self.clock()
            found = self._surges.get(scope)
            if found is None or found[0] <= now:
                return SurgeRecord().status(rules, now)
            return found[1].status(rules, now)

    def surge_start(self, scope: str, rules: SurgeRules, seconds: float) -> SurgeState:
        with self._lock:
            now = self.clock()
            return self._surge(scope, now).start(rules, now, seconds)

    def surge_end(self, scope: str, rules: SurgeRules) -> SurgeState:
        with self._lock:
            now = self.clock()
            return self._surge(scope, now).end(rules, now)

    def surge_scopes(self) -> Iterator[str]:
        with self._lock:
            now = self.clock()
            found = [scope for scope, (ends, _) in self._surges.items() if ends > now]
        yield from found

    def ping(self) -> None:
        return None

    def probe(self) -> None:
        return None

    def describe(self, deep: bool = False) -> dict[str, object]:
        return {
            "backend": "memory (this process only)",
            "keys": len(self),
            "max_keys": self.max_keys,
            "overflowed": self.overflowed,
        }
