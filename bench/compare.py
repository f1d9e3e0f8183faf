"""Per-request cost of Flask-Lockout against Flask-Limiter, in one process.

    pip install -e ".[bench]"
    python bench/compare.py [--rounds 15] [--requests 300] [--redis redis://127.0.0.1:6379/0]

Builds the same tiny app several ways and interleaves them round-robin, so
that machine drift hits all alike. Prints per-request median and p90, the
overhead over the bare view and its ratio in the same round, Redis round
trips per request (counted at the socket: a script call or a pipeline is
one) and the commands Redis executed for them (INFO commandstats deltas,
which include commands run inside scripts). Headers are on for both.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.connection
from flask import Flask, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from flask_lockout import Lockout

NEVER = "1000000/minute"
FORM = {"email": "alice@example.com", "password": "wrong"}

_round_trips = Counter[str]()
_send = redis.connection.Connection.send_packed_command


def _counting_send(self: Any, command: Any, check_health: bool = True) -> None:
    _round_trips["sent"] += 1
    _send(self, command, check_health)


redis.connection.Connection.send_packed_command = _counting_send  # type: ignore[method-assign]


def bare_app() -> Flask:
    app = Flask("bare")

    @app.post("/login")
    def login() -> tuple[str, int]:
        request.form.get("email")
        return "ok", 200

    return app


def limiter_app(storage_uri: str) -> Flask:
    app = Flask("limiter")
    app.config["RATELIMIT_HEADERS_ENABLED"] = True
    limiter = Limiter(
        get_remote_address,
        app=app,
        storage_uri=storage_uri,
        key_prefix=f"bench-{uuid.uuid4().hex[:6]}",
    )

    @app.post("/login")
    @limiter.limit(NEVER)
    def login() -> tuple[str, int]:
        request.form.get("email")
        return "ok", 200

    return app


def lockout_app(storage_uri: str, prefix: str, mode: str) -> Flask:
    app = Flask(f"lockout-{mode}")
    app.config.update(
        LOCKOUT_STORAGE_URI=storage_uri,
        LOCKOUT_KEY_PREFIX=f"{prefix}-{mode}",
        LOCKOUT_MAX_FAILURES=1 if mode == "locked" else 10**9,
        LOCKOUT_BASE_LOCK_SECONDS=3600,
    )
    lockout = Lockout(app)
    if mode == "throttled":

        @app.post("/login")
        @lockout.throttled(NEVER)
        def login() -> tuple[str, int]:
            request.form.get("email")
            return "ok", 200

        return app
    status = 200 if mode == "success" else 401

    @app.post("/login")
    @lockout.lockout_on_failure(by=("ip", "form:email"))
    def login() -> tuple[str, int]:
        request.form.get("email")
        return "ok", status

    if mode == "locked":
        app.test_client().post("/login", data=FORM)  # locks both keys
    return app


@dataclass
class Variant:
    name: str
    app: Flask
    redis: bool = False
    samples: list[float] = field(default_factory=list)
    round_medians: list[float] = field(default_factory=list)
    trips: int = 0
    requests: int = 0
    commands: Counter[str] = field(default_factory=Counter)


def command_stats(admin: redis.Redis) -> Counter[str]:
    stats = admin.info("commandstats")
    return Counter({k[len("cmdstat_") :]: v["calls"] for k, v in stats.items()})


def run_round(variant: Variant, count: int, admin: redis.Redis | None) -> None:
    client = variant.app.test_client()
    post: Callable[..., Any] = client.post
    before = command_stats(admin) if admin is not None and variant.redis else None
    _round_trips["sent"] = 0
    times = []
    for _ in range(count):
        start = time.perf_counter_ns()
        post("/login", data=FORM)
        times.append((time.perf_counter_ns() - start) / 1000)
    variant.trips += _round_trips["sent"]
    variant.requests += count
    if before is not None and admin is not None:
        delta = command_stats(admin) - before
        delta.pop("info", None)
        variant.commands += delta
    variant.samples += times
    variant.round_medians.append(statistics.median(times))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    admin = redis.Redis.from_url(args.redis)
    variants = [
        Variant("bare view", bare_app()),
        Variant("Flask-Limiter memory", limiter_app("memory://")),
        Variant("Flask-Limiter redis", limiter_app(args.redis), redis=True),
        Variant("throttled memory", lockout_app("memory://", prefix, "throttled")),
        Variant(
            "throttled redis", lockout_app(args.redis, prefix, "throttled"), redis=True
        ),
        Variant("lockout failure memory", lockout_app("memory://", prefix, "failure")),
        Variant(
            "lockout failure redis",
            lockout_app(args.redis, prefix, "failure"),
            redis=True,
        ),
        Variant(
            "lockout success redis",
            lockout_app(args.redis, prefix, "success"),
            redis=True,
        ),
        Variant(
            "lockout locked redis",
            lockout_app(args.redis, prefix, "locked"),
            redis=True,
        ),
    ]
    for variant in variants:  # warm up: imports, script loads, connections
        run_round(variant, 50, None)
        variant.samples.clear()
        variant.round_medians.clear()
        variant.trips = variant.requests = 0
    for _ in range(args.rounds):
        for variant in variants:
            run_round(variant, args.requests, admin)

    bare = variants[0]
    print(
        f"{args.rounds} rounds x {args.requests} requests, test client, µs per request"
    )
    columns = ("median", "p90", "overhead", "ratio", "trips")
    widths = (7, 7, 9, 6, 6)
    header = " ".join(f"{c:>{w}}" for c, w in zip(columns, widths, strict=True))
    print(f"{'variant':<24} {header}  commands per request")
    for variant in variants:
        ratios = [
            v / b
            for v, b in zip(variant.round_medians, bare.round_medians, strict=True)
        ]
        overheads = [
            v - b
            for v, b in zip(variant.round_medians, bare.round_medians, strict=True)
        ]
        p90 = statistics.quantiles(variant.samples, n=10)[-1]
        trips = variant.trips / variant.requests if variant.redis else 0
        commands = ", ".join(
            f"{name.upper()} {count / variant.requests:.2g}"
            for name, count in sorted(variant.commands.items())
        )
        print(
            f"{variant.name:<24} {statistics.median(variant.samples):7.0f} {p90:7.0f}"
            f" {statistics.median(overheads):9.0f} {statistics.median(ratios):6.2f}"
            f" {trips:6.2f}  {commands}"
        )
    for key in admin.scan_iter(match="bench-*", count=1000):
        admin.delete(key)
    for key in admin.scan_iter(match="LIMITS*", count=1000):
        admin.delete(key)


if __name__ == "__main__":
    main()
