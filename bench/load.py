"""Throughput behind gunicorn: the bare app, Flask-Limiter and Flask-Lockout's
shapes, interleaved in one run.

    pip install -e ".[bench]" && apt-get install -y wrk
    python bench/load.py [--rounds 5] [--seconds 8] [--private-redis]
    # the old commit's shapes side by side with this tree's, in one run:
    git worktree add /tmp/old 7ffca6f
    python bench/load.py --old /tmp/old --seconds 5

Every scenario is served by its own gunicorn (2 workers x 4 threads, the
gthread worker) on a free loopback port, all started up front and warmed up
(2 s of wrk) once. Then each round runs wrk (2 threads, 32 connections,
--seconds) once against every server, in an order rotated from round to
round (each worker takes half of the connections: wrk keeps every one open,
and an uncapped worker sometimes accepted them all and served alone),
posting wrong passwords for 5000 rotating accounts (a Lua script that also
counts the statuses). Redis is 127.0.0.1:6379 (--redis), or with
--private-redis a redis-server of the run's own on a free loopback port, so
that no other client of the machine's Redis shows up in its numbers; INFO
commandstats around each run gives the script calls and the commands
executed per request (commands inside scripts included).

Scenarios (bench/load_app.py builds them):

- bare: the view alone.
- Flask-Limiter: two limits (ip, email) on Redis, fixed window, headers
  off (its default). Flask-Lockout runs with its defaults, headers on.
- throttled: ``@throttled`` (ip + email).
- lockout: ``@lockout_on_failure`` (ip + email).
- quickstart: ``@throttled`` + ``@lockout_on_failure``, as the quickstart.
- flood: the quickstart shape under an attack on locked accounts: all 5000
  accounts and the address wrk comes from are locked before the run
  (LOCKOUT_MAX_FAILURES=3, one-hour locks); every answer must be 429.
- flood-accounts: the same, but only the accounts are locked, as when the
  attack comes from addresses that are not refused yet.

The throughput scenarios use LOCKOUT_MAX_FAILURES=10**9 and limits of
10**8/hour, so that nothing locks or refuses: every answer must be 401. A
run whose statuses are not what its scenario expects is flagged with "!".

Printed per scenario: req/s median [min-max] over the rounds, the ratio to
bare and to Flask-Limiter (median [min-max] of the per-round ratios: only
ratios taken in the same round count on this noisy machine), p50/p99
latency medians, statuses summed over rounds, Redis script calls and
commands per request, and where the CPU went: the server's gunicorn workers
(/proc, user + system) and Redis (INFO cpu; any other client of the same
Redis shows up there too), in microseconds per request. On a 2-core
machine that sum, plus wrk's share, is what bounds the throughput. Last,
waits/req: how often a worker thread gave up the CPU to wait, per request
(voluntary context switches, /proc): every blocking call, and under load
nearly every call that releases the GIL, which another thread takes, so
that the caller waits to get it back.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field

import redis
from benchlib import describe, free_port, knows_setting, spread, start_redis

BENCH = os.path.dirname(os.path.abspath(__file__))

WRK_SCRIPT = """
local threads = {}
local id = 0
setup = function(thread)
  thread:set("id", id)
  id = id + 1
  table.insert(threads, thread)
end

init = function(args)
  counter = id * 2500
  n401, n429, n200, nother = 0, 0, 0, 0
end

request = function()
  counter = counter + 1
  local body = "email=user" .. (counter % 5000) .. "%40example.com&password=wrong"
  return wrk.format("POST", "/login",
    {["Content-Type"] = "application/x-www-form-urlencoded"}, body)
end

response = function(status, headers, body)
  if status == 401 then n401 = n401 + 1
  elseif status == 429 then n429 = n429 + 1
  elseif status == 200 then n200 = n200 + 1
  else nother = nother + 1 end
end

done = function(summary, latency, requests)
  local s = {0, 0, 0, 0}
  for _, t in ipairs(threads) do
    s[1] = s[1] + t:get("n401")
    s[2] = s[2] + t:get("n429")
    s[3] = s[3] + t:get("n200")
    s[4] = s[4] + t:get("nother")
  end
  io.write(string.format("STATUSES 401=%d 429=%d 200=%d other=%d\\n",
    s[1], s[2], s[3], s[4]))
end
"""

LOCKOUT_SCENARIOS = ("throttled", "lockout", "quickstart", "flood", "flood-accounts")
EXPECTED = {"flood": 429, "flood-accounts": 429}


@dataclass
class Server:
    name: str
    scenario: str
    pythonpath: str | None
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log: str = ""
    #: The lockout state of 127.0.0.1 after the rounds.
    address: str = ""
    runs: list[dict[str, float]] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)

    def env(self, args: argparse.Namespace, prefix: str) -> dict[str, str]:
        env = {
            **os.environ,
            "LOAD_SCENARIO": self.scenario,
            "LOAD_REDIS": args.redis,
            "LOAD_REAL_HASH": "1" if args.real_hash else "0",
            "FLASK_LOCKOUT_STORAGE_URI": args.redis,
            "FLASK_LOCKOUT_KEY_PREFIX": prefix,
        }
        flood = self.scenario.startswith("flood")
        if flood:
            env.update(
                FLASK_LOCKOUT_MAX_FAILURES="3",
                FLASK_LOCKOUT_BASE_LOCK_SECONDS="3600",
                FLASK_LOCKOUT_MAX_LOCK_SECONDS="3600",
            )
        else:
            env["FLASK_LOCKOUT_MAX_FAILURES"] = str(10**9)
        package = self.pythonpath or os.path.dirname(BENCH)
        if knows_setting(package, "LOCKOUT_IP_MAX_FAILURES"):
            # ip keys have their own count: lock the address in a flood, as
            # before, and never in the throughput rounds.
            env["FLASK_LOCKOUT_IP_MAX_FAILURES"] = "3" if flood else str(10**9)
        if knows_setting(package, "LOCKOUT_SURGE"):
            # Counted on every decision, as shipped, but never started: one
            # address's flood is not the attack a surge is for.
            env["FLASK_LOCKOUT_SURGE_MIN_FAILURES"] = str(10**9)
        paths = [p for p in (self.pythonpath, BENCH) if p]
        env["PYTHONPATH"] = os.pathsep.join(paths)
        return env


def start_private_redis(args: argparse.Namespace) -> subprocess.Popen[bytes]:
    """A redis-server for this run alone; ``args.redis`` is set to it."""
    port = free_port()
    process = start_redis(port)
    args.redis = f"redis://127.0.0.1:{port}/0"
    return process


def wait_for(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn on {port} exited with {process.returncode}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
        except OSError as exc:
            if getattr(exc, "code", None) is not None:  # an HTTP answer: it is up
                return
            time.sleep(0.2)
            continue
        return
    raise RuntimeError("gunicorn did not start")


def start(server: Server, args: argparse.Namespace, prefix: str, log_dir: str) -> None:
    env = server.env(args, prefix)
    if server.scenario.startswith("flood"):
        out = subprocess.run(
            [sys.executable, os.path.join(BENCH, "load_app.py"), "prelock"],
            env=env,
            cwd=BENCH,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        print(f"  {server.name}: {out.strip()}", flush=True)
    server.port = free_port()
    server.log = os.path.join(log_dir, f"{server.name.replace(' ', '-')}.log")
    server.process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-w",
            "2",
            "--threads",
            "4",
            # wrk opens every connection at once and keeps it: without a cap,
            # one worker may accept them all and serve alone, at half speed.
            "--worker-connections",
            str(-(-args.connections // 2)),
            "-b",
            f"127.0.0.1:{server.port}",
            "--chdir",
            BENCH,
            "load_app:create_app()",
        ],
        env=env,
        # Not this checkout: python -m puts the working folder first on
        # sys.path, which would shadow the package named by PYTHONPATH.
        cwd=BENCH,
        stdout=subprocess.DEVNULL,
        stderr=open(server.log, "wb"),  # noqa: SIM115 - the child keeps it
    )
    wait_for(server.port, server.process)
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/package") as reply:
        served = reply.read().decode()
    want = server.pythonpath or os.path.dirname(BENCH)
    if os.path.realpath(served) != os.path.realpath(want):
        raise RuntimeError(f"{server.name} serves flask_lockout from {served}")


def wrk(port: int, script: str, threads: int, connections: int, seconds: int) -> str:
    return subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            script,
            f"http://127.0.0.1:{port}",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def script_calls(stats: dict[str, dict[str, int]]) -> tuple[int, int]:
    scripts = sum(
        v["calls"]
        for k, v in stats.items()
        if k in ("cmdstat_evalsha", "cmdstat_eval", "cmdstat_fcall")
    )
    total = sum(v["calls"] for k, v in stats.items() if k != "cmdstat_info")
    return scripts, total


def worker_cpu_seconds(server: Server) -> tuple[float, int]:
    """CPU seconds (user + system) the gunicorn workers of ``server`` used,
    and how often their threads gave up the CPU to wait (voluntary context
    switches: a blocking call, or waiting for the GIL)."""
    assert server.process is not None
    ticks = switches = 0
    children = f"/proc/{server.process.pid}/task/{server.process.pid}/children"
    with open(children) as handle:
        for pid in handle.read().split():
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
            for thread in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{thread}/status") as status:
                    found = re.search(
                        r"^voluntary_ctxt_switches:\s+(\d+)", status.read(), re.M
                    )
                switches += int(found.group(1)) if found else 0
    return ticks / os.sysconf("SC_CLK_TCK"), switches


def redis_cpu_seconds(admin: redis.Redis) -> float:
    info = admin.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def measure(
    server: Server, args: argparse.Namespace, script: str, admin: redis.Redis
) -> None:
    before = script_calls(admin.info("commandstats"))
    cpu_before = worker_cpu_seconds(server), redis_cpu_seconds(admin)
    out = wrk(server.port, script, 2, args.connections, args.seconds)
    cpu_after = worker_cpu_seconds(server), redis_cpu_seconds(admin)
    after = script_calls(admin.info("commandstats"))
    requests = float(_find(r"(\d+) requests in", out))
    statuses = dict(re.findall(r"(\w+)=(\d+)", _find(r"STATUSES (.*)", out)))
    server.statuses.update({k: int(v) for k, v in statuses.items()})
    server.runs.append(
        {
            "rps": float(_find(r"Requests/sec:\s+([\d.]+)", out)),
            "p50": _ms(_find(r"50%\s+([\d.]+\w+)", out)),
            "p99": _ms(_find(r"99%\s+([\d.]+\w+)", out)),
            "scripts": (after[0] - before[0]) / requests,
            "commands": (after[1] - before[1]) / requests,
            "worker_us": (cpu_after[0][0] - cpu_before[0][0]) / requests * 1e6,
            "switches": (cpu_after[0][1] - cpu_before[0][1]) / requests,
            "redis_us": (cpu_after[1] - cpu_before[1]) / requests * 1e6,
        }
    )


def _find(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    if match is None:
        raise RuntimeError(f"no {pattern!r} in wrk output:\n{text}")
    return match.group(1)


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def expected_ok(server: Server) -> bool:
    want = str(EXPECTED.get(server.scenario, 401))
    return sum(server.statuses.values()) == server.statuses[want]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument(
        "--private-redis",
        action="store_true",
        help="start a redis-server of this run's own on a free port (and stop it)",
    )
    parser.add_argument(
        "--old",
        metavar="DIR",
        help="also run Flask-Lockout's scenarios on the package in DIR"
        " (a worktree of an old commit), side by side",
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(LOCKOUT_SCENARIOS),
        help="which Flask-Lockout scenarios (bare and Flask-Limiter always run)",
    )
    parser.add_argument(
        "--real-hash",
        action="store_true",
        help="check a Werkzeug scrypt hash per request",
    )
    args = parser.parse_args()
    chosen = [s for s in args.scenarios.split(",") if s]
    unknown = set(chosen) - set(LOCKOUT_SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}")
    trees: list[tuple[str, str | None]] = [("new", None)]
    if args.old:
        trees = [("old", os.path.abspath(args.old)), ("new", None)]
    servers = [Server("bare", "bare", None), Server("Flask-Limiter", "limiter", None)]
    for scenario in chosen:
        for label, path in trees:
            name = f"{label} {scenario}" if args.old else scenario
            servers.append(Server(name, scenario, path))
    prefix = f"bench-load-{uuid.uuid4().hex[:8]}"
    private = start_private_redis(args) if args.private_redis else None
    admin = redis.Redis.from_url(args.redis)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(WRK_SCRIPT)
    log_dir = tempfile.mkdtemp(prefix="bench-load-logs-")
    started = time.monotonic()
    try:
        print(f"starting {len(servers)} servers", flush=True)
        for i, server in enumerate(servers):
            start(server, args, f"{prefix}-{i}", log_dir)
            wrk(server.port, handle.name, 1, 4, 2)  # warm up
        for r in range(args.rounds):
            shift = r % len(servers)
            for server in servers[shift:] + servers[:shift]:
                measure(server, args, handle.name, admin)
            print(f"round {r + 1}/{args.rounds} done", flush=True)
        for server in servers:
            if server.scenario in LOCKOUT_SCENARIOS:
                url = f"http://127.0.0.1:{server.port}/address-state"
                with urllib.request.urlopen(url) as reply:
                    server.address = reply.read().decode()
    finally:
        for server in servers:
            if server.process is not None:
                server.process.terminate()
        for server in servers:
            if server.process is not None:
                server.process.wait(timeout=30)
        os.unlink(handle.name)
        for key in admin.scan_iter(match=f"{prefix}*", count=1000):
            admin.delete(key)
        for key in admin.scan_iter(match="LIMITS*bench-load-*", count=1000):
            admin.delete(key)
        if private is not None:
            private.terminate()
            private.wait(timeout=30)
    report(servers, args, time.monotonic() - started)
    print(f"gunicorn logs: {log_dir}")


def log_warnings(server: Server) -> list[str]:
    """The distinct warnings and errors a server logged (gunicorn's own
    start and stop lines aside)."""
    seen: dict[str, None] = {}
    with open(server.log, errors="replace") as handle:
        for line in handle:
            if "[INFO]" in line or not line.strip():
                continue
            seen[re.sub(r"^\[[^]]*\] \[\d+\] ", "", line.strip())[:160]] = None
    return list(seen)


def report(servers: list[Server], args: argparse.Namespace, elapsed: float) -> None:
    import redis as redis_module

    check = "scrypt hash" if args.real_hash else "sha256 compare"
    print(
        f"\ngunicorn 2 workers x 4 threads, wrk 2 threads and {args.connections}"
        f" connections (half per worker), {args.rounds} rounds x {args.seconds} s,"
        f" password check: {check}, redis-py {redis_module.__version__}"
        f" on {args.redis}{' (private)' if args.private_redis else ''},"
        f" {elapsed / 60:.1f} min"
    )
    trees = {s.pythonpath or os.path.dirname(BENCH) for s in servers[2:]}
    print("Flask-Lockout: " + ", ".join(describe(path) for path in sorted(trees)))
    bare, limiter = servers[0], servers[1]
    header = (
        f"{'scenario':<22} {'req/s median [min-max]':>24} {'x bare':>18}"
        f" {'x Flask-Limiter':>18} {'p50 ms':>7} {'p99 ms':>7}"
        f" {'scripts/req':>11} {'cmds/req':>8} {'CPU µs/req: app':>15}"
        f" {'Redis':>5} {'waits/req':>9}  statuses"
    )
    print(header)
    for server in servers:
        rps = [run["rps"] for run in server.runs]
        to_bare = [
            a["rps"] / b["rps"] for a, b in zip(server.runs, bare.runs, strict=True)
        ]
        to_limiter = [
            a["rps"] / b["rps"] for a, b in zip(server.runs, limiter.runs, strict=True)
        ]
        statuses = " ".join(f"{k}={v}" for k, v in sorted(server.statuses.items()) if v)
        flag = "" if expected_ok(server) else " !"
        print(
            f"{server.name:<22} {spread(rps, '.0f'):>24}"
            f" {spread(to_bare):>18} {spread(to_limiter):>18}"
            f" {statistics.median(r['p50'] for r in server.runs):7.2f}"
            f" {statistics.median(r['p99'] for r in server.runs):7.2f}"
            f" {statistics.median(r['scripts'] for r in server.runs):11.2f}"
            f" {statistics.median(r['commands'] for r in server.runs):8.2f}"
            f" {statistics.median(r['worker_us'] for r in server.runs):15.0f}"
            f" {statistics.median(r['redis_us'] for r in server.runs):5.0f}"
            f" {statistics.median(r['switches'] for r in server.runs):9.1f}"
            f"  {statuses}{flag}"
        )
    print("lockout state of 127.0.0.1 (the ip key) after the rounds:")
    for server in servers:
        if server.address:
            print(f"  {server.name:<22} {server.address}")
    for server in servers:
        for line in log_warnings(server)[:5]:
            print(f"  ! {server.name} logged: {line}")


if __name__ == "__main__":
    main()
