"""Credential stuffing against the quickstart shape behind gunicorn: what a
replayed leaked list gets through, what real users logging in meanwhile
get, how soon a surge is detected, and what surge counting costs.

    pip install -e ".[bench]" && apt-get install -y wrk
    python bench/stuffing.py                  # this tree alone, about 5 min
    # the old code side by side with this tree's, in one run:
    git worktree add --detach /tmp/old main
    python bench/stuffing.py --old /tmp/old
    # a short smoke run (about 2 min):
    python bench/stuffing.py --pairs 2000 --attack-seconds 60 \\
        --throughput-seconds 5

Each tree is served by its own gunicorn (2 workers x 4 threads, gthread) on
a free loopback port, running that tree's flask_lockout (PYTHONPATH and
--chdir, as bench/load.py does; each worker prints the file it imported,
and the run stops if it is not the tree's). The app is bench/stuffing_app.py:
``@throttled("10/min;100/day", by=("ip", "form:email"))`` over
``@lockout_on_failure(by=("ip", "form:email"), scope="login")``, a cheap
password check (SHA-256, not scrypt), a SECRET_KEY (device cookies on),
Redis storage, and LOCKOUT_TRUSTED_PROXIES = 127.0.0.1/32: the client sets
X-Forwarded-For, as a proxy would. Redis is a redis-server of the run's own
on a free loopback port (or --redis URL), every tree under a key prefix of
its own; the app counts there what reached the password check (see
stuffing_app.py), the same way for every tree. All traffic is to 127.0.0.1:
the addresses below are only header values.

The attack: a leaked list of --pairs pairs (default 20 000) over --accounts
accounts (default half as many: each tried twice, in a shuffled order), of
which --valid-percent (1 %) are the account's real password, one in each
block of 100 pairs at a random place, so that any prefix of the list holds
its share. Every attempt comes from a fresh address spread over --networks
/24s (300, residential proxies), paced at --rate attempts a minute (300)
for --attack-seconds (180). The whole list at 300 a minute would take 67
minutes; a run replays its first rate x seconds / 60 pairs.

Real users, meanwhile: --users (50) log in with the right password at
times spread evenly over the attack, --known of them (40) from a device
that logged in once before the attack started (its cookie jar is kept, as
a browser keeps it, and each from its own stable address), the others from
new devices (no cookie, a fresh address each). Each tries once; a 429 is
recorded with its Retry-After (a step-up challenge, where the new code
offers one, is not attempted).

Every tree gets the same list, the same users and the same schedule, at
the same time (their servers run side by side; 300 attempts a minute is a
light load). Trees that export ``surge_started`` (the surge defence, issue
23) run with LOCKOUT_SURGE = True, LOCKOUT_SURGE_MIN_FAILURES = 60 and
LOCKOUT_SURGE_FACTOR = 5.0; older trees get none of those keys (they would
warn about them).

Then throughput: bench/load.py's quickstart shape (bench/load_app.py, wrk
posting wrong passwords for 5000 accounts, limits that never refuse) with
surge counting on and off (FLASK_LOCKOUT_SURGE), --rounds rounds of
--throughput-seconds each, the servers' order rotated from round to round;
on a tree without the surge defence only "off" applies. "On" sets
LOCKOUT_SURGE_MIN_FAILURES to 10**9: every failure is counted, but wrk's
thousands of failures a second from one address never start a surge, which
would refuse them and measure the refusals instead. Without wrk, a simple
threaded client (--connections keep-alive connections) posts the same
requests.

Printed per tree, side by side: the attempts sent (and the valid pairs among
them) and their statuses; guesses that reached the password check;
accounts taken over; seconds from the attack's start to the first
``surge_started`` (or "never"); real users' success rate for known and new
devices, with how many got 429 (and their Retry-After), how many 5xx or
connection errors; req/s of the quickstart shape with surge counting on
and off (median [min-max] over rounds) and the on/off ratio of each
round. --json PATH also writes it all as JSON ("-": standard output).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import load
import redis
from benchlib import (
    describe,
    exports,
    free_port,
    knows_setting,
    spread,
    start_redis,
)
from stuffing_app import ATTACKED, password_for

BENCH = os.path.dirname(os.path.abspath(__file__))
HERE = os.path.dirname(BENCH)
#: Surge settings of the stuffing run, for trees that have the surge defence.
SURGE_SETTINGS = {
    "FLASK_LOCKOUT_SURGE": "true",
    "FLASK_LOCKOUT_SURGE_MIN_FAILURES": "60",
    "FLASK_LOCKOUT_SURGE_FACTOR": "5.0",
}


@dataclass
class Reply:
    status: int  # 0: no answer (connection error or timeout)
    retry_after: str | None = None
    cookies: list[str] = field(default_factory=list)
    error: str = ""


def post(port: int, email: str, password: str, address: str, cookie: str) -> Reply:
    """One login from ``address`` (X-Forwarded-For) on a connection of its
    own, as from a fresh proxy; ``cookie`` is the Cookie header, if any."""
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Accept": "text/html,application/xhtml+xml",
        "X-Forwarded-For": address,
        "Connection": "close",
    }
    if cookie:
        headers["Cookie"] = cookie
    body = urllib.parse.urlencode({"email": email, "password": password})
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", "/login", body, headers)
        response = connection.getresponse()
        response.read()
        return Reply(
            response.status,
            response.getheader("Retry-After"),
            [c.split(";", 1)[0] for c in response.headers.get_all("Set-Cookie") or []],
        )
    except (OSError, http.client.HTTPException) as exc:
        return Reply(0, error=f"{type(exc).__name__}: {exc}")
    finally:
        connection.close()


class Addresses:
    """Addresses spread over networks (/24s) drawn at random, each handed
    out once. Only header values: no traffic goes to them."""

    def __init__(self, rng: random.Random, networks: int, taken: set[str]) -> None:
        self.rng = rng
        self.networks: list[str] = []
        while len(self.networks) < networks:
            first = rng.choice([n for n in range(11, 224) if n not in (100, 127, 172)])
            net = f"{first}.{rng.randrange(256)}.{rng.randrange(256)}"
            if net not in taken:
                taken.add(net)
                self.networks.append(net)
        self.used = Counter[str]()

    def fresh(self) -> str:
        for _ in range(1000):
            net = self.rng.choice(self.networks)
            if self.used[net] < 254:
                self.used[net] += 1
                return f"{net}.{self.used[net]}"
        raise SystemExit("too few addresses: raise --networks")


@dataclass
class Attempt:
    email: str
    password: str
    address: str
    valid: bool


@dataclass
class User:
    email: str
    #: A known device's own address; a new device's fresh one.
    address: str
    known: bool
    #: The cookies each tree set on the first login, by tree label.
    jars: dict[str, dict[str, str]] = field(default_factory=dict)

    def cookie(self, tree: str) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.jars.get(tree, {}).items())

    def keep(self, tree: str, reply: Reply) -> None:
        jar = self.jars.setdefault(tree, {})
        for pair in reply.cookies:
            name, _, value = pair.partition("=")
            jar[name.strip()] = value


def leaked_list(
    args: argparse.Namespace, rng: random.Random, taken: set[str]
) -> list[Attempt]:
    accounts = args.accounts or max(1, args.pairs // 2)
    order = [i % accounts for i in range(args.pairs)]
    rng.shuffle(order)
    block = max(1, round(100 / args.valid_percent)) if args.valid_percent else 0
    valid = set()
    if block:
        for start in range(0, args.pairs, block):
            valid.add(start + rng.randrange(min(block, args.pairs - start)))
    addresses = Addresses(rng, args.networks, taken)
    attempts = []
    for i, n in enumerate(order):
        email = f"{ATTACKED}{n}@example.com"
        right = i in valid
        password = password_for(email) if right else f"leaked-{rng.randrange(10**9)}"
        attempts.append(Attempt(email, password, addresses.fresh(), right))
    return attempts


@dataclass
class Tree:
    label: str  # "new" or "old"
    path: str
    has_surge: bool
    prefix: str
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log: str = ""
    served: list[str] = field(default_factory=list)
    attack: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    users: list[dict[str, Any]] = field(default_factory=list)
    first_logins: Counter[str] = field(default_factory=Counter)
    counters: dict[str, Any] = field(default_factory=dict)
    throughput: dict[str, list[float]] = field(default_factory=dict)

    @property
    def counter_prefix(self) -> str:
        return f"{self.prefix}-bench"


def start_stuffing(tree: Tree, redis_url: str, log_dir: str) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([tree.path, BENCH]),
        "STUFFING_REDIS": redis_url,
        "STUFFING_COUNTERS": tree.counter_prefix,
        "FLASK_LOCKOUT_STORAGE_URI": redis_url,
        "FLASK_LOCKOUT_KEY_PREFIX": tree.prefix,
    }
    if tree.has_surge:
        env.update(SURGE_SETTINGS)
    tree.port = free_port()
    tree.log = os.path.join(log_dir, f"stuffing-{tree.label}.log")
    tree.process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-k", "gthread", "-w", "2"]
        + ["--threads", "4", "-b", f"127.0.0.1:{tree.port}", "--chdir", BENCH]
        + ["stuffing_app:create_app()"],
        env=env,
        # Not a checkout: python -m puts the working folder first on sys.path.
        cwd=BENCH,
        stdout=subprocess.DEVNULL,
        stderr=open(tree.log, "wb"),  # noqa: SIM115 - the child keeps it
    )
    load.wait_for(tree.port, tree.process)
    deadline = time.monotonic() + 30
    while len(tree.served) < 2 and time.monotonic() < deadline:
        with open(tree.log, errors="replace") as handle:
            tree.served = re.findall(
                r"worker \d+ serves flask_lockout from (\S+)", handle.read()
            )
        time.sleep(0.2)
    if len(tree.served) < 2:
        raise RuntimeError(
            f"the {tree.label} tree's workers did not say what they serve"
        )
    for file in tree.served:
        package = os.path.dirname(os.path.dirname(file))
        if os.path.realpath(package) != os.path.realpath(tree.path):
            raise RuntimeError(f"the {tree.label} tree's worker serves {file}")


def stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is not None and process.poll() is None:
        process.terminate()
        process.wait(timeout=30)


def run_attack(
    trees: list[Tree],
    attempts: list[Attempt],
    users: list[User],
    args: argparse.Namespace,
) -> tuple[float, int, int]:
    """Replays the list on every tree at once, real users in between. Returns
    the attack's start (Unix time), the attempts sent and the valid ones."""
    interval = 60.0 / args.rate
    count = min(len(attempts), int(args.attack_seconds / interval))
    events: list[tuple[float, Attempt | User]] = [
        (i * interval, attempts[i]) for i in range(count)
    ]
    spacing = args.attack_seconds / max(1, len(users))
    events += [((k + 0.5) * spacing, user) for k, user in enumerate(users)]
    events.sort(key=lambda e: e[0])
    lock = threading.Lock()

    def attack(tree: Tree, attempt: Attempt) -> None:
        reply = post(tree.port, attempt.email, attempt.password, attempt.address, "")
        with lock:
            tree.attack[str(reply.status or "error")] += 1
            if reply.error:
                tree.errors[reply.error[:120]] += 1

    def log_in(tree: Tree, user: User, at: float) -> None:
        reply = post(
            tree.port,
            user.email,
            password_for(user.email),
            user.address,
            user.cookie(tree.label),
        )
        with lock:
            tree.users.append(
                {
                    "known": user.known,
                    "at": round(at, 1),
                    "status": reply.status,
                    "retry_after": reply.retry_after,
                    "error": reply.error,
                }
            )

    started = time.time() + 1.0
    with ThreadPoolExecutor(args.workers) as pool:
        for offset, item in events:
            delay = started + offset - time.time()
            if delay > 0:
                time.sleep(delay)
            for tree in trees:
                if isinstance(item, Attempt):
                    pool.submit(attack, tree, item)
                else:
                    pool.submit(log_in, tree, item, offset)
    return started, count, sum(a.valid for a in attempts[:count])


def real_users(
    args: argparse.Namespace, rng: random.Random, taken: set[str]
) -> list[User]:
    """--users users, --known of them on known devices, in a shuffled order;
    their addresses are in networks of their own, none an attacker's."""
    homes = Addresses(rng, args.users, taken)
    kinds = [i < args.known for i in range(args.users)]
    rng.shuffle(kinds)
    return [
        User(f"real{i}@example.com", homes.fresh(), known)
        for i, known in enumerate(kinds)
    ]


def first_logins(trees: list[Tree], users: list[User]) -> None:
    """The known devices log in once before the attack, and keep the cookies."""
    for tree in trees:
        for user in users:
            if user.known:
                reply = post(
                    tree.port, user.email, password_for(user.email), user.address, ""
                )
                user.keep(tree.label, reply)
                tree.first_logins[str(reply.status or "error")] += 1
                tree.first_logins["with a cookie"] += bool(reply.cookies)


def read_counters(tree: Tree, admin: redis.Redis) -> None:
    c = tree.counter_prefix

    def number(key: str) -> int:
        return int(admin.get(f"{c}:{key}") or 0)

    tree.counters = {
        "guesses": number("guesses"),
        "takeovers": number("takeovers"),
        "taken": admin.scard(f"{c}:taken"),
        "real_checks": number("real-checks"),
        "surges": number("surge-count"),
        "surges_ended": number("surge-end-count"),
    }
    for name, key in (("surge", "surge-first"), ("surge_end", "surge-end-first")):
        raw = admin.get(f"{c}:{key}")
        tree.counters[name] = json.loads(raw) if raw else None


@dataclass
class LoadServer(load.Server):
    """A bench/load_app.py quickstart server with settings of its own."""

    tree: str = ""
    surge: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def env(self, args: argparse.Namespace, prefix: str) -> dict[str, str]:
        return {**super().env(args, prefix), **self.extra}


def threaded_load(port: int, seconds: float, connections: int) -> dict[str, Any]:
    """wrk's requests (wrong passwords for 5000 rotating accounts) from
    ``connections`` threads, each on a keep-alive connection: a fallback
    that needs no wrk, and takes a share of the CPU wrk would not."""
    statuses: Counter[str] = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    headers = {"Content-Type": "application/x-www-form-urlencoded"}

    def one(k: int) -> None:
        seen: Counter[str] = Counter()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        n = k * 2500
        while time.monotonic() < deadline:
            n += 1
            body = f"email=user{n % 5000}%40example.com&password=wrong"
            try:
                connection.request("POST", "/login", body, headers)
                response = connection.getresponse()
                response.read()
                seen[str(response.status)] += 1
            except OSError:
                seen["other"] += 1
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.close()
        with lock:
            statuses.update(seen)

    started = time.monotonic()
    threads = [threading.Thread(target=one, args=(k,)) for k in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    return {"rps": sum(statuses.values()) / elapsed, "statuses": statuses}


def throughput(
    trees: list[Tree], args: argparse.Namespace, prefix: str, log_dir: str
) -> list[LoadServer]:
    """req/s of the quickstart shape, surge counting on and off, interleaved."""
    servers = []
    for tree in trees:
        modes = ("on", "off") if tree.has_surge else ("off",)
        # Since 8f8e22e ip keys lock after LOCKOUT_IP_MAX_FAILURES (20), not
        # LOCKOUT_MAX_FAILURES: wrk's one address would lock within the
        # warm-up and the rounds would measure 429s.
        ip_key = knows_setting(tree.path, "LOCKOUT_IP_MAX_FAILURES")
        for mode in modes:
            extra = {}
            if ip_key:
                extra["FLASK_LOCKOUT_IP_MAX_FAILURES"] = str(10**9)
            if tree.has_surge:
                extra["FLASK_LOCKOUT_SURGE"] = "true" if mode == "on" else "false"
                if mode == "on":
                    extra["FLASK_LOCKOUT_SURGE_MIN_FAILURES"] = str(10**9)
            name = f"{tree.label} surge {mode}"
            servers.append(
                LoadServer(
                    name,
                    "quickstart",
                    tree.path,
                    tree=tree.label,
                    surge=mode,
                    extra=extra,
                )
            )
    options = argparse.Namespace(
        redis=args.redis,
        real_hash=False,
        connections=args.connections,
        seconds=args.throughput_seconds,
    )
    admin = redis.Redis.from_url(args.redis)
    have_wrk = shutil.which("wrk") is not None
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(load.WRK_SCRIPT)
    try:
        for i, server in enumerate(servers):
            load.start(server, options, f"{prefix}-load-{i}", log_dir)
            warm(server, handle.name, have_wrk, args)
        for r in range(args.rounds):
            shift = r % len(servers)
            for server in servers[shift:] + servers[:shift]:
                if have_wrk:
                    load.measure(server, options, handle.name, admin)
                else:
                    found = threaded_load(
                        server.port, args.throughput_seconds, args.connections
                    )
                    server.statuses.update(found["statuses"])
                    server.runs.append({"rps": found["rps"]})
            print(f"  throughput round {r + 1}/{args.rounds} done", flush=True)
    finally:
        for server in servers:
            stop(server.process)
        os.unlink(handle.name)
    for tree in trees:
        for server in servers:
            if server.tree == tree.label:
                tree.throughput[server.surge] = [run["rps"] for run in server.runs]
    return servers


def warm(
    server: LoadServer, script: str, have_wrk: bool, args: argparse.Namespace
) -> None:
    if have_wrk:
        load.wrk(server.port, script, 1, 4, 2)
    else:
        threaded_load(server.port, 2, 4)


def detection(tree: Tree, started: float) -> str:
    surge = tree.counters.get("surge")
    if surge is None:
        return "never" if tree.has_surge else "never (no surge_started)"
    return f"{float(surge['time']) - started:.1f} s"


def user_summary(tree: Tree, known: bool) -> dict[str, Any]:
    tries = [u for u in tree.users if u["known"] is known]
    refused = [u for u in tries if u["status"] == 429]
    waits = sorted(
        int(u["retry_after"])
        for u in refused
        if (u["retry_after"] or "").strip().isdigit()
    )
    return {
        "users": len(tries),
        "logged_in": sum(u["status"] == 200 for u in tries),
        "429": len(refused),
        "retry_after": waits,
        "5xx": sum(u["status"] >= 500 for u in tries),
        "errors": sum(u["status"] == 0 for u in tries),
        "other": dict(
            Counter(str(u["status"]) for u in tries if u["status"] not in (0, 200, 429))
            - Counter()
        ),
    }


def results(
    trees: list[Tree], args: argparse.Namespace, run: dict[str, Any]
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        **run,
        "trees": {},
    }
    for tree in trees:
        on, off = tree.throughput.get("on", []), tree.throughput.get("off", [])
        out["trees"][tree.label] = {
            "tree": describe(tree.path),
            "served_from": sorted(set(tree.served)),
            "surge_defence": tree.has_surge,
            "attack_statuses": dict(tree.attack),
            "attack_errors": dict(tree.errors),
            "first_logins": dict(tree.first_logins),
            **tree.counters,
            "detection_seconds": (
                float(tree.counters["surge"]["time"]) - run["attack_started"]
                if tree.counters.get("surge")
                else None
            ),
            "known_devices": user_summary(tree, True),
            "new_devices": user_summary(tree, False),
            "throughput_rps": {"on": on, "off": off},
            "on_off_ratio": [a / b for a, b in zip(on, off, strict=False)]
            if on
            else [],
        }
    return out


def users_lines(found: dict[str, Any]) -> tuple[str, str, str]:
    """Logged in, refused with 429, and 5xx or no answer, as printed."""
    n = found["users"]
    share = f"{found['logged_in']}/{n}"
    if n:
        share += f" ({100 * found['logged_in'] / n:.0f} %)"
    waits = found["retry_after"]
    refused = f"{found['429']}"
    if waits:
        refused += f" (Retry-After {waits[0]}-{waits[-1]} s)"
    failed = f"{found['5xx']} / {found['errors']}"
    if found["other"]:
        failed += " (other " + " ".join(f"{k}={v}" for k, v in found["other"].items())
        failed += ")"
    return share, refused, failed


def report(trees: list[Tree], data: dict[str, Any], elapsed: float) -> None:
    args = data["settings"]
    print(
        f"\ngunicorn 2 workers x 4 threads (gthread), quickstart shape, Redis"
        f" {args['redis']}{' (private)' if data['private_redis'] else ''};"
        f" {data['sent']} of {args['pairs']} leaked pairs sent ({data['valid']}"
        f" valid) at {args['rate']}/min over {args['attack_seconds']} s from"
        f" {args['networks']} /24s; {args['users']} real users ({args['known']}"
        f" on known devices); {elapsed / 60:.1f} min"
    )
    for tree in trees:
        print(
            f"{tree.label}: {describe(tree.path)}, workers serving"
            f" {', '.join(sorted(set(tree.served)))}"
        )
    rows: list[tuple[str, list[str]]] = []
    found = [data["trees"][t.label] for t in trees]
    rows.append(
        (
            "surge defence in the tree",
            ["yes" if f["surge_defence"] else "no" for f in found],
        )
    )
    rows.append(
        (
            "attack statuses",
            [
                " ".join(f"{k}={v}" for k, v in sorted(f["attack_statuses"].items()))
                for f in found
            ],
        )
    )
    rows.append(
        (
            "guesses that reached the password check",
            [f"{f['guesses']} of {data['sent']}" for f in found],
        )
    )
    rows.append(
        (
            "accounts taken over",
            [f"{f['taken']} of {data['valid']} valid" for f in found],
        )
    )
    rows.append(
        ("surge detected after", [detection(t, data["attack_started"]) for t in trees])
    )
    for kind, key in (
        ("known devices", "known_devices"),
        ("new devices", "new_devices"),
    ):
        lines = [users_lines(f[key]) for f in found]
        rows.append((f"{kind}: logged in", [line[0] for line in lines]))
        rows.append(("  got 429", [line[1] for line in lines]))
        rows.append(("  got 5xx / no answer", [line[2] for line in lines]))
    for mode in ("on", "off"):
        rows.append(
            (
                f"req/s quickstart, surge counting {mode}",
                [
                    spread(f["throughput_rps"][mode], ".0f")
                    if f["throughput_rps"][mode]
                    else "n/a"
                    for f in found
                ],
            )
        )
    rows.append(
        (
            "  on/off",
            [spread(f["on_off_ratio"]) if f["on_off_ratio"] else "n/a" for f in found],
        )
    )
    width = max(len(r[0]) for r in rows) + 2
    columns = [
        max(len(t.label), *(len(r[1][i]) for r in rows)) + 2
        for i, t in enumerate(trees)
    ]
    print(
        f"{'':<{width}}"
        + "".join(f"{t.label:<{c}}" for t, c in zip(trees, columns, strict=True))
    )
    for name, values in rows:
        print(
            f"{name:<{width}}"
            + "".join(f"{v:<{c}}" for v, c in zip(values, columns, strict=True))
        )
    for tree, f in zip(trees, found, strict=True):
        surge = f.get("surge")
        if surge:
            print(
                f"  {tree.label}: first surge_started {surge};"
                f" {f['surges']} sent, {f['surges_ended']} surge_ended"
            )
        if f["attack_errors"]:
            print(f"  ! {tree.label}: attack errors {f['attack_errors']}")
        if (
            f["first_logins"].get("200", 0) != args["known"]
            or f["first_logins"].get("with a cookie", 0) != args["known"]
        ):
            print(f"  ! {tree.label}: known devices' first logins {f['first_logins']}")
        for line in log_warnings(tree.log)[:5]:
            print(f"  ! {tree.label} logged: {line}")


def log_warnings(path: str) -> list[str]:
    """The distinct lines a server logged besides gunicorn's own and the
    workers' word on what they serve."""
    seen: dict[str, None] = {}
    with open(path, errors="replace") as handle:
        for line in handle:
            if (
                "[INFO]" in line
                or "serves flask_lockout from" in line
                or not line.strip()
            ):
                continue
            seen[re.sub(r"^\[[^]]*\] \[\d+\] ", "", line.strip())[:160]] = None
    return list(seen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=20_000)
    parser.add_argument("--accounts", type=int, default=0, help="default: pairs / 2")
    parser.add_argument("--valid-percent", type=float, default=1.0)
    parser.add_argument("--networks", type=int, default=300)
    parser.add_argument("--rate", type=float, default=300.0, help="attempts a minute")
    parser.add_argument("--attack-seconds", type=float, default=180.0)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--known", type=int, default=40)
    parser.add_argument("--throughput-seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=32, help="client threads")
    parser.add_argument("--seed", type=int, default=23)
    parser.add_argument(
        "--redis",
        help="a Redis URL to use (default: a redis-server of the run's own)",
    )
    parser.add_argument(
        "--old",
        metavar="DIR",
        help="also run the package in DIR (a worktree of an old commit) side by side",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args()
    if not 0 <= args.known <= args.users:
        parser.error("--known must be between 0 and --users")
    if args.throughput_seconds > 0 and shutil.which("wrk") is None:
        print("no wrk (apt-get install -y wrk): a threaded client measures throughput")
    paths = ([("old", os.path.abspath(args.old))] if args.old else []) + [("new", HERE)]
    prefix = f"bench-stuffing-{uuid.uuid4().hex[:8]}"
    trees = [
        Tree(
            label,
            path,
            exports(path, "surge_started")["surge_started"],
            f"{prefix}-{label}",
        )
        for label, path in paths
    ]
    private = None
    if args.redis is None:
        port = free_port()
        private = start_redis(port)
        args.redis = f"redis://127.0.0.1:{port}/0"
    admin = redis.Redis.from_url(args.redis)
    rng = random.Random(args.seed)
    taken: set[str] = set()
    attempts = leaked_list(args, rng, taken)
    users = real_users(args, rng, taken)
    log_dir = tempfile.mkdtemp(prefix="bench-stuffing-logs-")
    began = time.monotonic()
    load_servers: list[LoadServer] = []
    try:
        for tree in trees:
            start_stuffing(tree, args.redis, log_dir)
            print(f"{tree.label}: workers serve {', '.join(tree.served)}", flush=True)
        first_logins(trees, users)
        print(f"attack: {args.attack_seconds:.0f} s at {args.rate:.0f}/min", flush=True)
        started, sent, valid = run_attack(trees, attempts, users, args)
        for tree in trees:
            read_counters(tree, admin)
            stop(tree.process)
        if args.throughput_seconds > 0 and args.rounds > 0:
            print("throughput", flush=True)
            load_servers = throughput(trees, args, prefix, log_dir)
    finally:
        for tree in trees:
            stop(tree.process)
        for key in admin.scan_iter(match=f"{prefix}*", count=1000):
            admin.delete(key)
        if private is not None:
            private.terminate()
            private.wait(timeout=30)
    run = {
        "attack_started": started,
        "sent": sent,
        "valid": valid,
        "private_redis": private is not None,
    }
    data = results(trees, args, run)
    report(trees, data, time.monotonic() - began)
    for server in load_servers:
        if not load.expected_ok(server):
            statuses = " ".join(f"{k}={v}" for k, v in sorted(server.statuses.items()))
            print(f"  ! {server.name}: throughput statuses {statuses}, not all 401")
        for line in load.log_warnings(server)[:3]:
            print(f"  ! {server.name} logged: {line}")
    print(f"gunicorn logs: {log_dir}")
    if args.json:
        text = json.dumps(data, indent=2, default=str)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w") as handle:
                handle.write(text + "\n")


if __name__ == "__main__":
    main()
