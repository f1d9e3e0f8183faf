"""Redis round trips per request, counted on the wire, through Flask's test client.

    python bench/round_trips.py [--requests 20]
    PYTHONPATH=/tmp/old python bench/round_trips.py   # an old commit's worktree

The app talks to Redis (127.0.0.1:6379) through a counting proxy on
loopback (bench/benchlib.py), so every send the client makes is counted,
whatever path the package takes to the socket; a script call or a pipeline
is one round trip. For each request type the first request primes it (a
connection, a script load, the refusal that gets cached; for the rate
limit, the two requests it allows too) and the next
--requests are counted. "before view" is counted up to the view's first
line, for requests that reach the view.

Keys are ip + form:email everywhere, one scope ("login") for both
decorators. The counting app has LOCKOUT_MAX_FAILURES=10**9, so nothing
locks; the locking app has 3 and hour-long locks, and its 60 locked accounts
and the locked address 127.0.0.1 are locked by a second app instance on the
same prefix, so that the measured one starts with nothing cached, like a
worker that did not see the locks. Rows:

- locked account, refusal known: one locked account again and again.
- locked accounts, address refused: rotating locked accounts from the
  locked address (a flood from one address).
- locked accounts, new addresses: rotating locked accounts, each from a
  new address (a distributed flood; no target, shown for its cost).
- rate-limit refusal known: a 2/hour limit, over it.
- throttled / wrong password / success: new accounts every request.
- stacked: ``@throttled`` over ``@lockout_on_failure`` on one view.

The target column is issue #12's. Refusals are remembered in the process
for LOCKOUT_LOCAL_CACHE_SECONDS (1 s by default); a row runs well within it.
"""

from __future__ import annotations

import argparse
import itertools
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import redis
from benchlib import CountingProxy, declare_success, set_if_known, tree
from flask import Flask, g, request

from flask_lockout import Lockout

HIGH = "1000000/minute"


def make_app(proxy: CountingProxy, prefix: str, max_failures: int) -> Flask:
    app = Flask(f"trips-{max_failures}")
    app.config.update(
        LOCKOUT_STORAGE_URI=proxy.url,
        LOCKOUT_KEY_PREFIX=prefix,
        LOCKOUT_MAX_FAILURES=max_failures,
        LOCKOUT_BASE_LOCK_SECONDS=3600,
        LOCKOUT_MAX_LOCK_SECONDS=3600,
    )
    # The rows' own failures neither lock the address nor start a surge (it
    # is still counted in every decision, as shipped).
    set_if_known(
        app.config,
        LOCKOUT_IP_MAX_FAILURES=max_failures,
        LOCKOUT_SURGE_MIN_FAILURES=10**9,
    )
    lockout = Lockout(app)
    keys = ("ip", "form:email")

    def answer() -> tuple[str, int]:
        g.trips_at_view = proxy.snapshot()[0]
        if request.form.get("password") == "right":
            declare_success(lockout)
            return "welcome", 200
        return "no", 401

    @app.post("/lockout")
    @lockout.lockout_on_failure(by=keys, scope="login")
    def guarded() -> tuple[str, int]:
        return answer()

    @app.post("/throttled")
    @lockout.throttled(HIGH, by=keys, scope="login")
    def throttled() -> tuple[str, int]:
        return answer()

    @app.post("/limited")
    @lockout.throttled("2/hour", by=keys, scope="limited")
    def limited() -> tuple[str, int]:
        return answer()

    @app.post("/stacked")
    @lockout.throttled(HIGH, by=keys, scope="login")
    @lockout.lockout_on_failure(by=keys, scope="login")
    def stacked() -> tuple[str, int]:
        return answer()

    return app


@dataclass
class Row:
    name: str
    expected: str
    trips: float
    before_view: float | None
    statuses: Counter[int]
    commands: Counter[str]
    requests: int


def count(
    proxy: CountingProxy,
    app: Flask,
    name: str,
    expected: str,
    path: str,
    requests: Iterator[tuple[str, str, str]],
    n: int,
    prime: int = 1,
) -> Row:
    """Prime with ``prime`` requests, then count ``n`` more.

    ``requests`` yields (email, password, remote address)."""
    client = app.test_client()
    before_view: list[int] = []
    statuses: Counter[int] = Counter()

    def post() -> tuple[int, int]:
        email, password, address = next(requests)
        start = proxy.snapshot()[0]
        app._last_view_trips = None  # type: ignore[attr-defined]
        response = client.post(
            path,
            data={"email": email, "password": password},
            environ_base={"REMOTE_ADDR": address},
        )
        return start, response.status_code

    for _ in range(prime):
        post()
    writes, commands = proxy.snapshot()
    for _ in range(n):
        start, status = post()
        statuses[status] += 1
        at_view = getattr(app, "_last_view_trips", None)
        if at_view is not None:
            before_view.append(at_view - start)
    after, after_commands = proxy.snapshot()
    return Row(
        name,
        expected,
        (after - writes) / n,
        sum(before_view) / len(before_view) if before_view else None,
        statuses,
        after_commands - commands,
        n,
    )


def capture_view_trips(app: Flask) -> None:
    """Copy the view's g.trips_at_view onto the app for the harness to read."""

    @app.after_request
    def keep(response):  # type: ignore[no-untyped-def]
        if "trips_at_view" in g:
            app._last_view_trips = g.trips_at_view  # type: ignore[attr-defined]
        return response


def addresses(base: str) -> Iterator[str]:
    """Distinct loopback addresses 127.<base>.x.y (strings in the WSGI
    environ: no traffic goes to them)."""
    for i in itertools.count(1):
        yield f"127.{base}.{i // 250 % 250}.{i % 250 + 1}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    n = args.requests
    prefix = f"bench-trips-{uuid.uuid4().hex[:8]}"
    proxy = CountingProxy()
    counting = make_app(proxy, f"{prefix}-c", 10**9)
    locking = make_app(proxy, f"{prefix}-l", 3)
    for app in (counting, locking):
        capture_view_trips(app)
    # Another "process" locks the keys, so the measured app starts with
    # nothing cached, as a worker that did not see the lock would.
    client = make_app(proxy, f"{prefix}-l", 3).test_client()

    # Lock 60 accounts from other addresses, so their ip keys stay clean.
    lockers = addresses("10")
    locked = [f"locked{i}@example.com" for i in range(60)]
    for email in locked:
        for _ in range(3):
            client.post(
                "/lockout",
                data={"email": email, "password": "wrong"},
                environ_base={"REMOTE_ADDR": next(lockers)},
            )
    # Lock the address 127.0.0.1 with three accounts that stay unlocked.
    for i in range(3):
        client.post(
            "/lockout",
            data={"email": f"iplock{i}@example.com", "password": "wrong"},
            environ_base={"REMOTE_ADDR": "127.0.0.1"},
        )

    def rotating(password: str) -> Iterator[tuple[str, str, str]]:
        for i in itertools.count():
            yield f"user{i}-{uuid.uuid4().hex[:6]}@example.com", password, "127.0.0.2"

    def repeat(email: str, address: str) -> Iterator[tuple[str, str, str]]:
        return itertools.repeat((email, "wrong", address))

    def over_locked(
        address: str | None, start: int = 0
    ) -> Iterator[tuple[str, str, str]]:
        """Cycle the locked accounts from ``start``; the priming request is
        one whose refusal this process has not seen yet."""
        fresh = addresses("30")
        for email in itertools.islice(itertools.cycle(locked), start, None):
            yield email, "wrong", address or next(fresh)

    rows = [
        count(
            proxy,
            locking,
            "locked account, refusal known",
            "0",
            "/lockout",
            repeat(locked[0], "127.0.0.9"),
            n,
        ),
        count(
            proxy,
            locking,
            "locked accounts, address refused",
            "0",
            "/lockout",
            over_locked("127.0.0.1", start=40),
            n,
        ),
        count(
            proxy,
            locking,
            "locked accounts, new addresses",
            "-",
            "/lockout",
            over_locked(None, start=1),
            n,
        ),
        count(
            proxy,
            counting,
            "rate-limit refusal known",
            "0",
            "/limited",
            repeat("limited@example.com", "127.0.0.3"),
            n,
            prime=3,  # two allowed, then the refusal that gets remembered
        ),
        count(
            proxy,
            counting,
            "throttled, allowed",
            "1",
            "/throttled",
            rotating("wrong"),
            n,
        ),
        count(
            proxy,
            counting,
            "wrong password",
            "1",
            "/lockout",
            rotating("wrong"),
            n,
        ),
        count(proxy, counting, "success", "2", "/lockout", rotating("right"), n),
        count(
            proxy,
            counting,
            "stacked, wrong password",
            "1 before view",
            "/stacked",
            rotating("wrong"),
            n,
        ),
        count(
            proxy,
            counting,
            "stacked, success",
            "1 before view",
            "/stacked",
            rotating("right"),
            n,
        ),
        count(
            proxy,
            locking,
            "stacked, locked accounts, address refused",
            "0",
            "/stacked",
            over_locked("127.0.0.1", start=50),
            n,
        ),
    ]
    print(f"Flask-Lockout {tree()}, redis-py {redis.__version__}, {n} requests each")
    print(
        f"{'request':<42} {'target':>13} {'trips':>6} {'before view':>11}"
        f"  statuses; commands per request"
    )
    for row in rows:
        before = "-" if row.before_view is None else f"{row.before_view:g}"
        statuses = " ".join(f"{s}x{c}" for s, c in sorted(row.statuses.items()))
        commands = ", ".join(
            f"{name} {c / row.requests:g}" for name, c in sorted(row.commands.items())
        )
        print(
            f"{row.name:<42} {row.expected:>13} {row.trips:>6g} {before:>11}"
            f"  {statuses}; {commands}"
        )
    admin = redis.Redis()
    for key in admin.scan_iter(match=f"{prefix}*", count=1000):
        admin.delete(key)
    proxy.close()


if __name__ == "__main__":
    main()
