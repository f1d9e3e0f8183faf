"""Measure each engine's decisions on a real Redis.

    python bench/redis_decisions.py [--url redis://127.0.0.1:6379/0]

Prints, per decision: client round trips (a script call is one, whatever
runs inside it), the commands Redis executed for it (INFO commandstats
deltas, which include commands run inside scripts), MEMORY USAGE of each key
kind, and the verifications 16 concurrent wrong guesses get on one account,
with reservations and with a naive check-then-record for contrast.
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import redis

from flask_lockout import (
    AttemptThrottle,
    LockoutConfig,
    LoginLockout,
    RedisStorage,
    SlidingWindowStore,
)

POLICY = LockoutConfig(max_failures=5, base_lock_seconds=60)


class CountingRedis(redis.Redis):
    sent: Counter[str]

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.sent[str(args[0])] += 1
        return super().execute_command(*args, **options)


def command_stats(client: redis.Redis) -> Counter[str]:
    stats = client.info("commandstats")
    return Counter({name[len("cmdstat_") :]: v["calls"] for name, v in stats.items()})


def measure(
    client: CountingRedis, admin: redis.Redis, name: str, decide: Callable[[], object]
) -> None:
    decide()  # scripts loaded, keys in their steady state
    runs = 20
    client.sent = Counter()
    before = command_stats(admin)
    for _ in range(runs):
        decide()
    after = command_stats(admin)
    executed = after - before
    executed.pop("info", None)
    trips = sum(client.sent.values()) / runs
    per_call = ", ".join(
        f"{cmd.upper()} {count / runs:g}" for cmd, count in sorted(executed.items())
    )
    print(f"{name:<38} {trips:>4g}   {per_call}")


def concurrent_guesses(storage: RedisStorage, naive: bool, threads: int = 16) -> int:
    lockout = LoginLockout(POLICY, storage=storage)
    key = f"concurrency:{uuid.uuid4().hex}"
    start = threading.Barrier(threads)
    verified: list[int] = []

    def guess() -> None:
        start.wait()
        if naive:
            if not lockout.is_locked(key)[0]:
                time.sleep(0.01)  # verifying the password
                verified.append(1)
                lockout.record_failure(key)
            return
        with lockout.attempt(key) as attempt:
            if attempt.granted:
                time.sleep(0.01)
                verified.append(1)
                attempt.failed()

    pool = [threading.Thread(target=guess) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return len(verified)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    client = CountingRedis.from_url(args.url)
    client.sent = Counter()
    admin = redis.Redis.from_url(args.url)
    storage = RedisStorage(client, prefix=prefix)
    lockout = LoginLockout(POLICY, storage=storage)
    throttle = AttemptThrottle(storage, 10**9, 300)
    limits = SlidingWindowStore(storage)
    many = LockoutConfig(max_failures=10**9)
    unbounded = LoginLockout(many, storage=storage)
    for _ in range(5):
        lockout.record_failure("locked")

    def attempt_failed() -> None:
        with unbounded.attempt("attempt-fail") as attempt:
            attempt.failed()

    def attempt_succeeded() -> None:
        with unbounded.attempt("attempt-ok") as attempt:
            attempt.succeeded()

    print(f"Redis {admin.info('server')['redis_version']} at {args.url}\n")
    print(f"{'decision':<38} {'trips':>5}   commands executed per decision")
    measure(client, admin, "LoginLockout.is_locked", lambda: lockout.is_locked("k"))
    measure(
        client,
        admin,
        "LoginLockout.record_failure",
        lambda: unbounded.record_failure("f"),
    )
    measure(
        client,
        admin,
        "LoginLockout.record_failure (locked)",
        lambda: lockout.record_failure("locked"),
    )
    measure(
        client,
        admin,
        "LoginLockout.record_success",
        lambda: lockout.record_success("s"),
    )
    measure(client, admin, "attempt + failed (2 decisions)", attempt_failed)
    measure(client, admin, "attempt + succeeded (2 decisions)", attempt_succeeded)
    measure(client, admin, "AttemptThrottle.hit", lambda: throttle.hit("t"))
    measure(client, admin, "AttemptThrottle.status", lambda: throttle.status("t"))
    measure(
        client,
        admin,
        "SlidingWindowStore.hit (1 limit)",
        lambda: limits.hit("r1", "10/sec"),
    )
    measure(
        client,
        admin,
        "SlidingWindowStore.hit (2 limits)",
        lambda: limits.hit("r2", "10/sec;10/day"),
    )

    print("\nMEMORY USAGE per key (bytes)")
    held = unbounded.attempt("reserved")
    for kind, key in [
        ("lockout state, locked", storage.storage_key("locked", "lock")),
        ("lockout state, counting", storage.storage_key("f", "lock")),
        ("reservations (1 in flight)", storage.storage_key("reserved", "pending")),
        ("throttle counter", storage.storage_key("throttle:t", "throttle")),
        ("rate-limit window", storage.storage_key("r1", "rl:10/1")),
    ]:
        print(f"  {kind:<28} {admin.memory_usage(key)}")
    held.release()

    print(f"\n16 concurrent wrong guesses, max_failures={POLICY.max_failures}")
    for naive in (False, True):
        runs = [concurrent_guesses(storage, naive) for _ in range(5)]
        label = (
            "naive is_locked + record_failure" if naive else "attempt() reservations"
        )
        over = [max(0, n - POLICY.max_failures) for n in runs]
        print(f"  {label:<34} verified {runs}  over-admitted {over}")

    for key in admin.scan_iter(match=f"{prefix}:*", count=500):
        admin.delete(key)


if __name__ == "__main__":
    main()
