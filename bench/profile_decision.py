"""Where one decision's time goes, from the decorator to the socket: a
wrong password through ``@lockout_on_failure`` (ip + email) on Redis.

    python bench/profile_decision.py [--rounds 15] [--requests 300]
    PYTHONPATH=/tmp/old python bench/profile_decision.py   # an old commit's worktree

Two apps answer the same wrong password with 401 through Flask's test
client: the bare view, and the guarded one (Redis on 127.0.0.1:6379,
LOCKOUT_MAX_FAILURES=10**9, a new account and address every request). They
run in interleaved rounds; medians over rounds of the round medians:

- Flask + test client: the bare request.
- Flask-Lockout in Python: guarded - bare - time inside the storage calls.
- storage calls: the time inside the store's methods (``lockout_*``,
  ``rate_limit_*``, ``throttle_*`` of ``app.extensions["lockout"].storage``,
  timed by wrapping them), split into:
  - the round trip itself: the exact bytes the client sent for one request
    (captured through a recording proxy) written straight to a socket and
    the whole reply read back, timed in the same rounds;
  - of which Redis executing the scripts (Lua included): INFO
    commandstats' microseconds per script call over the rounds (any other
    client's scripts on the same Redis are in that average) times the
    script calls of one request;
  - client overhead: storage calls - the raw round trip (the store's own
    code: argument packing, the reply reader, connection reuse; on code
    from before e1ecc52, redis-py's pool checkout, pipeline and parser).

Then cProfile over --profile-requests guarded requests: the exclusive time
grouped by where the code lives, and the top functions by cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import itertools
import pstats
import socket
import statistics
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import redis
from benchlib import CountingProxy, set_if_known, tree
from flask import Flask, request

from flask_lockout import Lockout

STORE_PREFIXES = ("lockout_", "rate_limit_", "throttle_")


def bare_app() -> Flask:
    app = Flask("bare")

    @app.post("/login")
    def login() -> tuple[str, int]:
        request.form.get("email")
        return "no", 401

    return app


def guarded_app(url: str, prefix: str) -> Flask:
    app = Flask("guarded")
    app.config.update(
        LOCKOUT_STORAGE_URI=url,
        LOCKOUT_KEY_PREFIX=prefix,
        LOCKOUT_MAX_FAILURES=10**9,
    )
    # Surges counted in every decision, as shipped, never started by the
    # benchmark's own failures.
    set_if_known(app.config, LOCKOUT_SURGE_MIN_FAILURES=10**9)
    lockout = Lockout(app)

    @app.post("/login")
    @lockout.lockout_on_failure(by=("ip", "form:email"))
    def login() -> tuple[str, int]:
        request.form.get("email")
        return "no", 401

    return app


def inputs() -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    for i in itertools.count():
        yield (
            {"email": f"user{i}-{uuid.uuid4().hex[:6]}@example.com", "password": "x"},
            {"REMOTE_ADDR": f"127.{i // 62500 % 250 + 1}.{i // 250 % 250}.{i % 250}"},
        )


def time_storage(app: Flask, spent: list[int]) -> None:
    """Wrap the store's decision methods so that their time adds up in
    ``spent[0]`` (nanoseconds)."""
    storage = app.extensions["lockout"].storage
    for name in dir(storage):
        if not name.startswith(STORE_PREFIXES):
            continue
        method = getattr(storage, name)
        if not callable(method):
            continue

        @functools.wraps(method)
        def timed(*args: Any, _method: Callable[..., Any] = method, **kw: Any) -> Any:
            start = time.perf_counter_ns()
            try:
                return _method(*args, **kw)
            finally:
                spent[0] += time.perf_counter_ns() - start

        setattr(storage, name, timed)


def captured_request(prefix: str) -> list[bytes]:
    """The client's sends for one steady-state guarded request."""
    proxy = CountingProxy(record=True)
    app = guarded_app(proxy.url, f"{prefix}-capture")
    client, source = app.test_client(), inputs()
    for _ in range(3):  # connect, load the scripts
        form, environ = next(source)
        client.post("/login", data=form, environ_base=environ)
    assert proxy.sent is not None
    proxy.sent.clear()
    form, environ = next(source)
    client.post("/login", data=form, environ_base=environ)
    sent = list(proxy.sent)
    proxy.close()
    return sent


def _values_complete(buf: bytes, pos: int = 0) -> int | None:
    """The end of one complete RESP value at ``pos``, or None."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return None
    kind, head = buf[pos : pos + 1], buf[pos + 1 : end]
    if kind in (b"+", b"-", b":", b",", b"#", b"_"):
        return end + 2
    if kind in (b"$", b"!", b"="):
        size = int(head)
        if size < 0:
            return end + 2
        return end + 2 + size + 2 if len(buf) >= end + 2 + size + 2 else None
    if kind in (b"*", b"%", b"~", b">"):
        count = int(head) * (2 if kind == b"%" else 1)
        pos = end + 2
        for _ in range(max(count, 0)):
            nxt = _values_complete(buf, pos)
            if nxt is None:
                return None
            pos = nxt
        return pos
    raise ValueError(f"unexpected RESP {buf[pos : pos + 20]!r}")


def replies_in(payload: bytes) -> int:
    """How many commands a client send holds (so many replies come back)."""
    n, pos = 0, 0
    while pos < len(payload):
        end = payload.find(b"\r\n", pos)
        count = int(payload[pos + 1 : end])
        pos = end + 2
        for _ in range(count):
            end = payload.find(b"\r\n", pos)
            pos = end + 2 + int(payload[pos + 1 : end]) + 2
        n += 1
    return n


def raw_round_trips(sock: socket.socket, sends: list[bytes]) -> int:
    """Write each send straight to the socket, read its replies; ns."""
    start = time.perf_counter_ns()
    for payload in sends:
        sock.sendall(payload)
        want, buf, pos = replies_in(payload), b"", 0
        while want:
            buf += sock.recv(65536)
            while want and (end := _values_complete(buf, pos)) is not None:
                pos, want = end, want - 1
    return time.perf_counter_ns() - start


def script_stats(admin: redis.Redis) -> tuple[float, int]:
    """Microseconds Redis spent in script calls, and how many it ran."""
    stats = admin.info("commandstats")
    scripts = [v for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval")]
    return sum(v["usec"] for v in scripts), sum(v["calls"] for v in scripts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--profile-requests", type=int, default=3000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    prefix = f"bench-prof-{uuid.uuid4().hex[:8]}"
    admin = redis.Redis.from_url(args.redis)
    sends = captured_request(prefix)
    bare, guarded = bare_app(), guarded_app(args.redis, prefix)
    spent = [0]
    time_storage(guarded, spent)
    kwargs = redis.ConnectionPool.from_url(args.redis).connection_kwargs
    raw = socket.create_connection((kwargs["host"], kwargs["port"]))
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    # The captured sends carry the proxy's connection setup only if it was
    # new; a steady-state request is script calls only.
    bare_source, guarded_source = inputs(), inputs()
    scripts_per_request = sum(replies_in(p) for p in sends)
    columns: dict[str, list[float]] = defaultdict(list)

    def one(app: Flask, source: Iterator[Any]) -> float:
        form, environ = next(source)
        client = app.test_client()
        start = time.perf_counter_ns()
        client.post("/login", data=form, environ_base=environ)
        return (time.perf_counter_ns() - start) / 1000

    for _ in range(50):  # warm up
        one(bare, bare_source), one(guarded, guarded_source)
        raw_round_trips(raw, sends)
    for _ in range(args.rounds):
        b, g, s, w = [], [], [], []
        usec, calls = script_stats(admin)
        for _ in range(args.requests):
            b.append(one(bare, bare_source))
            spent[0] = 0
            g.append(one(guarded, guarded_source))
            s.append(spent[0] / 1000)
        usec_after, calls_after = script_stats(admin)
        per_call = (usec_after - usec) / max(1, calls_after - calls)
        server = per_call * scripts_per_request
        for _ in range(args.requests):
            w.append(raw_round_trips(raw, sends) / 1000)
        columns["bare"].append(statistics.median(b))
        columns["guarded"].append(statistics.median(g))
        columns["storage"].append(statistics.median(s))
        columns["wire"].append(statistics.median(w))
        columns["server"].append(server)
    raw.close()

    med = {k: statistics.median(v) for k, v in columns.items()}
    lockout_python = med["guarded"] - med["bare"] - med["storage"]
    client = med["storage"] - med["wire"]
    names = [replies_in(p) for p in sends]
    print(
        f"Flask-Lockout {tree()}, redis-py {redis.__version__}; {args.rounds} rounds"
        f" x {args.requests} requests; one request sends {len(sends)} round"
        f" trip(s) of {names} command(s)"
    )
    print(f"{'µs per wrong password (median of round medians)':<52} {'µs':>7}  share")
    rows = [
        ("whole request through the test client", med["guarded"]),
        ("  Flask + test client (the bare request)", med["bare"]),
        ("  Flask-Lockout in Python, outside storage calls", lockout_python),
        ("  storage calls", med["storage"]),
        ("    the round trip itself (raw socket, same bytes)", med["wire"]),
        ("      of which Redis executing (commandstats)", med["server"]),
        ("    client overhead (storage calls - raw round trip)", client),
    ]
    for label, value in rows:
        print(f"{label:<52} {value:7.0f}  {value / med['guarded']:5.0%}")
    spreads = ", ".join(
        f"{k} {min(v):.0f}-{max(v):.0f}" for k, v in columns.items() if k != "server"
    )
    print(f"round medians, min-max: {spreads}")
    profile(guarded, args.profile_requests)
    for key in admin.scan_iter(match=f"{prefix}*", count=1000):
        admin.delete(key)


def _where(filename: str) -> str:
    if "flask_lockout" in filename:
        return "flask_lockout"
    for name in ("redis", "werkzeug", "flask", "threading", "socket", "json"):
        if f"/{name}/" in filename or filename.endswith(f"/{name}.py"):
            return name
    if filename == "~":
        return "built-ins (socket I/O, C calls)"
    return "other stdlib"


def profile(app: Flask, n: int) -> None:
    source = inputs()
    client = app.test_client()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(n):
        form, environ = next(source)
        client.post("/login", data=form, environ_base=environ)
    profiler.disable()
    stats = pstats.Stats(profiler)
    groups: dict[str, float] = defaultdict(float)
    total = 0.0
    for (filename, _line, _name), row in stats.stats.items():  # type: ignore[attr-defined]
        groups[_where(filename)] += row[2]
        total += row[2]
    print(f"\ncProfile, {n} wrong passwords: exclusive time by where the code lives")
    for group, seconds in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"  {group:<34} {seconds / n * 1e6:7.1f} µs  {seconds / total:5.0%}")
    print("\ntop functions by cumulative time (µs per request):")
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][3])  # type: ignore[attr-defined]
    shown = 0
    for (filename, line, name), row in rows:
        where = _where(filename)
        if where not in ("flask_lockout", "redis", "built-ins (socket I/O, C calls)"):
            continue
        short = filename.split("site-packages/")[-1].split("/work/main/")[-1]
        print(
            f"  {row[3] / n * 1e6:7.1f} cum {row[2] / n * 1e6:6.1f} own"
            f" {row[1] / n:5.1f} calls  {short}:{line} {name}"
        )
        shown += 1
        if shown == 22:
            break


if __name__ == "__main__":
    main()
