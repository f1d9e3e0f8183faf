"""What one decision costs Redis, in instructions: the scripts run inside a
private redis-server under callgrind, which counts instructions rather
than time, so the count repeats exactly from run to run, whatever else the
machine does, and two trees compare without noise.

    apt-get install -y valgrind
    python bench/script_cost.py                       # this tree
    git worktree add /tmp/old 6113008
    python bench/script_cost.py --old /tmp/old        # and an old commit's

For each decision (a wrong password through the quickstart shape, ip +
email: the rate limit and the reservation in one call; the reservation
alone; the rate limit alone), a fresh redis-server runs under
``valgrind --tool=callgrind --toggle-collect=evalShaCommand`` (only the
script commands are counted, not the network or Redis's timers). After a
warm-up over every account, it takes --calls decisions, then again --calls
more; the difference between the two totals, divided by --calls, is the
cost of one decision. Each tree runs in a subprocess of its own, with its
package first on ``sys.path``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from benchlib import callgrind_total, cost_trees, describe, free_port

BENCH = os.path.dirname(os.path.abspath(__file__))
ACCOUNTS = 5000
DECISIONS = ("quickstart", "reserve", "ratelimit")
#: Also measured with --decisions shipped (trees with surges): the
#: quickstart as an app decides it, with each key's own policy and the
#: scope's surge record counted.

#: Run in a subprocess with the tree first on sys.path: ``decide`` makes
#: ``count`` decisions against the server on ``port``.
CLIENT = """
import sys
sys.path.insert(0, sys.argv[1])
import redis
from flask_lockout import RedisStorage
from flask_lockout.limits import parse_limits
from flask_lockout.policy import LockoutConfig
from flask_lockout.storage.base import AttemptKey

port, decision, start, count = int(sys.argv[2]), sys.argv[3], *map(int, sys.argv[4:6])
store = RedisStorage(redis.Redis(port=port), prefix="cost")
policy = LockoutConfig(max_failures=10**9)
limits = parse_limits("100000000/hour")
try:  # lockout_attempt takes one AttemptAsk
    from flask_lockout.storage.base import AttemptAsk

    def attempt(keys, limits, attempts, policy, token, ttl, surge, reported=None):
        ask = AttemptAsk(attempts, policy, token, ttl, keys, limits, reported, surge)
        return store.lockout_attempt(ask)
except ImportError:
    attempt = getattr(store, "lockout_attempt", None)
if decision == "shipped":  # as an app decides: policies per key, surge counted
    from flask_lockout.config import Settings
    from flask_lockout.storage.base import SurgeAsk
    from flask_lockout.surge import SurgeRules

    shipped = Settings.from_config({"LOCKOUT_MAX_FAILURES": 10**9,
                                    "LOCKOUT_IP_MAX_FAILURES": 10**9})
    surge = SurgeAsk("login", SurgeRules(min_failures=10**9), False, False)
for i in range(start, start + count):
    email = f"login:email:user{i % 5000}@example.com"
    keys = ["login:ip:127.0.0.1", email]
    attempts = [AttemptKey(keys[0], ""), AttemptKey(email, f"{i % 5000:016x}")]
    if decision == "shipped":
        attempts = [AttemptKey(a.key, a.spelling, shipped.policy_of(a.key))
                    for a in attempts]
        attempt(keys, limits, attempts, policy, f"t{i}", 30, surge, 1)
    elif decision == "quickstart" and hasattr(store, "lockout_attempt"):
        attempt(keys, limits, attempts, policy, f"t{i}", 30, None)
    elif decision == "quickstart":  # trees before lockout_attempt
        store.lockout_guard(keys, limits, attempts, policy, f"t{i}", 30)
    elif decision == "reserve":
        store.lockout_reserve_all(attempts, policy, f"t{i}", 30)
    else:
        store.rate_limit_hit_many(keys, limits)
"""


def instructions(tree: str, decision: str, calls: int) -> int:
    """Instructions counted in EVALSHA over a warm-up and ``calls``
    decisions, on a fresh server."""
    port = free_port()
    out = os.path.join(tempfile.mkdtemp(prefix="script-cost-"), "callgrind.out")
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--toggle-collect=evalShaCommand"]
        + [f"--callgrind-out-file={out}", "redis-server", "--port", str(port)]
        + ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        run = [sys.executable, "-c", CLIENT, tree, str(port), decision]
        deadline = time.monotonic() + 60
        while subprocess.run(run + ["0", "1"], capture_output=True).returncode:
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server under callgrind did not start")
            time.sleep(0.5)
        subprocess.run(run + ["1", str(ACCOUNTS + calls)], check=True)
    finally:
        server.terminate()
        server.wait(timeout=120)
    return callgrind_total(out)


def per_decision(tree: str, decision: str, calls: int) -> float:
    # The warm-up and the one call that waited for the server cancel out.
    once = instructions(tree, decision, calls)
    twice = instructions(tree, decision, 2 * calls)
    return (twice - once) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--old", metavar="DIR", help="also measure the tree in DIR")
    parser.add_argument("--decisions", default=",".join(DECISIONS))
    args = parser.parse_args()
    trees = cost_trees(args.old)
    decisions = [d for d in args.decisions.split(",") if d]
    print(f"instructions Redis runs in EVALSHA per decision ({args.calls} calls)")
    print(f"{'decision':<12}" + "".join(f"{describe(t):>34}" for t in trees))
    for decision in decisions:
        counts = [per_decision(tree, decision, args.calls) for tree in trees]
        row = "".join(f"{count:>34,.0f}" for count in counts)
        if len(counts) == 2:
            row += f"   {counts[0] / counts[1]:.2f}x"
        print(f"{decision:<12}{row}", flush=True)


if __name__ == "__main__":
    main()
