"""The memory store under a flood of distinct attacker keys.

    python bench/memory_flood.py [--keys 1000000] [--max-keys 100000]

Locks some victims, puts one on probation, then records one failure (and a
throttle hit) for each of --keys distinct keys. Prints the store's size,
whether every victim is still locked, the time per failure and peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import time

from flask_lockout import AttemptThrottle, LockoutConfig, LoginLockout, MemoryStorage


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--max-keys", type=int, default=100_000)
    args = parser.parse_args()
    now = [0.0]
    storage = MemoryStorage(clock=lambda: now[0], max_keys=args.max_keys)
    policy = LockoutConfig(
        max_failures=5, base_lock_seconds=3600, max_lock_seconds=7200
    )
    lockout = LoginLockout(policy, storage=storage)
    throttle = AttemptThrottle(storage, 5, 300)
    victims = [f"login:email:victim{i}@example.com" for i in range(1000)]
    for key in victims:
        for _ in range(5):
            lockout.record_failure(key)
    print(f"baseline peak RSS {peak_rss_mib():.0f} MiB, {len(storage)} keys")
    start = time.perf_counter()
    for i in range(args.keys):
        lockout.record_failure(f"login:ip:attacker-{i}")
        if i % 4 == 0:
            throttle.hit(f"otp:attacker-{i}")
        if i % 1000 == 0:
            now[0] += 0.01  # time moves on; old counters expire
    elapsed = time.perf_counter() - start
    still_locked = sum(lockout.is_locked(key)[0] for key in victims)
    held = f"{len(storage):,} keys held (bound {args.max_keys:,})"
    print(f"after {args.keys:,} attacker keys: {held}")
    print(f"victims still locked: {still_locked}/{len(victims)}")
    per_operation = elapsed / (args.keys * 1.25) * 1e6
    print(f"{per_operation:.1f} µs per operation, peak RSS {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
