"""Concurrent guesses on one key never get more verifications than allowed."""

from __future__ import annotations

import multiprocessing
import threading
import time
from typing import Any

import pytest

from flask_lockout import LockoutConfig, LoginLockout, RedisStorage, Storage

from .conftest import REDIS_URL, run_in_threads

POLICY = LockoutConfig(max_failures=5, base_lock_seconds=60)
KEY = "login:email:alice@example.com"
VERIFY_SECONDS = 0.01  # the time a password hash takes, roughly


def guess_until_locked(lockout: LoginLockout, start: Any) -> int:
    """Guess wrong until the key locks; returns the guesses verified."""
    start.wait()
    verified = 0
    for _ in range(200):
        with lockout.attempt(KEY) as attempt:
            if attempt.locked:
                return verified
            if not attempt.granted:
                time.sleep(0.001)  # every allowed attempt is in flight
                continue
            time.sleep(VERIFY_SECONDS)
            verified += 1
            attempt.failed()
    return verified


def run_threads(storage: Storage, threads: int, start: Any = None) -> int:
    """Guess from ``threads`` threads at once; the verifications they got."""
    lockout = LoginLockout(POLICY, storage=storage)
    start = start or threading.Barrier(threads)
    counts: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        count = guess_until_locked(lockout, start)
        with lock:
            counts.append(count)

    run_in_threads(work, threads)
    assert len(counts) == threads
    return sum(counts)


def test_threads_on_memory() -> None:
    from flask_lockout import MemoryStorage

    assert run_threads(MemoryStorage(), 50) == POLICY.max_failures


@pytest.mark.redis
def test_threads_on_redis(redis_client: Any, redis_prefix: str) -> None:
    storage = RedisStorage(redis_client, prefix=redis_prefix)
    assert run_threads(storage, 50) == POLICY.max_failures


def _process(prefix: str, threads: int, start: Any, results: Any) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    results.put(run_threads(RedisStorage(client, prefix=prefix), threads, start))


@pytest.mark.redis
def test_processes_on_redis(redis_client: Any, redis_prefix: str) -> None:
    context = multiprocessing.get_context("spawn")
    processes, threads = 4, 13
    start = context.Barrier(processes * threads)
    results = context.Queue()
    workers = [
        context.Process(target=_process, args=(redis_prefix, threads, start, results))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    verified = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    assert sum(verified) == POLICY.max_failures
