"""The memory store under a flood of distinct attacker keys.

    python bench/memory_flood.py [--keys 1000000] [--max-keys 100000]
    PYTHONPATH=/tmp/old python bench/memory_flood.py   # an old commit's worktree

Locks 1000 victims, then records one failure (and, every fourth key, a
throttle hit) for each of --keys distinct keys against the bound --max-keys
(LOCKOUT_MEMORY_MAX_KEYS, 100 000 by default). Prints the store's size,
whether every victim is still locked, the time per operation and peak RSS.
Then, with tracemalloc tracing from before the store is made, the same
flood again in a fresh store: bytes per held key = the traced bytes still
allocated after the flood (the store and everything it holds; the flood's
loop allocates nothing that outlives it) / the keys the store holds.
"""

from __future__ import annotations

import argparse
import gc
import resource
import time
import tracemalloc

from benchlib import tree

from flask_lockout import AttemptThrottle, LockoutConfig, LoginLockout, MemoryStorage


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def flood(keys: int, max_keys: int) -> tuple[MemoryStorage, list[str], float]:
    """A store with 1000 locked victims after ``keys`` attacker keys; the
    store, the victims' keys and the seconds the flood took."""
    now = [0.0]
    storage = MemoryStorage(clock=lambda: now[0], max_keys=max_keys)
    policy = LockoutConfig(
        max_failures=5, base_lock_seconds=3600, max_lock_seconds=7200
    )
    lockout = LoginLockout(policy, storage=storage)
    throttle = AttemptThrottle(storage, 5, 300)
    victims = [f"login:email:victim{i}@example.com" for i in range(1000)]
    for key in victims:
        for _ in range(5):
            lockout.record_failure(key)
    start = time.perf_counter()
    for i in range(keys):
        lockout.record_failure(f"login:ip:attacker-{i}")
        if i % 4 == 0:
            throttle.hit(f"otp:attacker-{i}")
        if i % 1000 == 0:
            now[0] += 0.01  # time moves on; old counters expire
    elapsed = time.perf_counter() - start
    still_locked = sum(lockout.is_locked(key)[0] for key in victims)
    print(f"victims still locked: {still_locked}/{len(victims)}")
    return storage, victims, elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--max-keys", type=int, default=100_000)
    args = parser.parse_args()
    print(f"Flask-Lockout {tree()}")
    print(f"baseline peak RSS {peak_rss_mib():.0f} MiB")
    storage, _victims, elapsed = flood(args.keys, args.max_keys)
    held = f"{len(storage):,} keys held (bound {args.max_keys:,})"
    print(f"after {args.keys:,} attacker keys: {held}")
    per_operation = elapsed / (args.keys * 1.25) * 1e6
    print(f"{per_operation:.1f} µs per operation, peak RSS {peak_rss_mib():.0f} MiB")
    del storage, _victims
    gc.collect()

    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    storage, victims, _ = flood(args.keys, args.max_keys)
    del victims
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    held = len(storage)
    print(
        f"traced: {traced / 2**20:.1f} MiB for {held:,} keys held:"
        f" {traced / held:.0f} bytes per held key"
    )


if __name__ == "__main__":
    main()
