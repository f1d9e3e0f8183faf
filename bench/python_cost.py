"""What one request costs CPython, in instructions: the login view of
bench/load_app.py, one shape at a time, called straight through WSGI in a
process that runs under callgrind, which counts instructions rather than
time, so that two trees compare without the noise of this machine.

    apt-get install -y valgrind
    python bench/python_cost.py                        # this tree
    git worktree add /tmp/old 8c1c984
    python bench/python_cost.py --old /tmp/old         # and an old commit's

The store answers every script call with the reply Redis gave the first
time (a private redis-server gives it), so the count is Flask-Lockout's and
Flask's Python, not the socket or the kernel: what bench/script_cost.py is
for Redis, this is for the worker. Each shape runs --requests wrong
passwords after a warm-up, then 3 x --requests; the difference of the two
totals, divided by 2 x --requests, is one request. Each tree runs in a
subprocess of its own, with its package first on ``sys.path``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

from benchlib import callgrind_total, cost_trees, describe, free_port, start_redis

BENCH = os.path.dirname(os.path.abspath(__file__))
SCENARIOS = ("bare", "throttled", "lockout", "quickstart")

#: Run under callgrind with the tree first on sys.path: ``count`` wrong
#: passwords through the app of bench/load_app.py, after a warm-up.
CLIENT = """
import io, os, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
count = int(sys.argv[3])
import load_app

app = load_app.create_app()
if os.environ["LOAD_SCENARIO"] != "bare":
    try:  # kept connections through redis-py's public API
        from flask_lockout.storage.kept import KeptConnections as Path

        def pick(commands):
            return repr(commands[0][:4])
    except ImportError:  # older trees wrote the protocol themselves
        from flask_lockout.storage.wire import DirectWire as Path

        def pick(payload):
            return payload[:120]

    asked = Path.call
    answers = {}

    def canned(self, commands, *args, **kwargs):
        # The script's sha (and the first key) pick the reply to replay.
        found = answers.get(pick(commands))
        if found is None:
            found = asked(self, commands, *args, **kwargs)
            if not any(isinstance(reply, Exception) for reply in found):
                answers[pick(commands)] = found
        return list(found)

    Path.call = canned

def environ(i):
    body = f"email=user{i % 5000}%40example.com&password=wrong".encode()
    return {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/login", "SERVER_NAME": "x",
        "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "x",
        "wsgi.url_scheme": "http", "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": "application/x-www-form-urlencoded",
        "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr, "wsgi.multithread": True,
        "wsgi.multiprocess": True, "wsgi.run_once": False, "wsgi.version": (1, 0),
    }


def start_response(status, headers, exc_info=None):
    assert status.startswith("401"), status


def run(requests):
    for env in requests:
        body = app(env, start_response)
        for _ in body:
            pass
        body.close()


run([environ(i) for i in range(300)])  # warm up: every answer canned
run([environ(i) for i in range(count)])
"""


def instructions(tree: str, scenario: str, redis_url: str, count: int) -> int:
    out = os.path.join(tempfile.mkdtemp(prefix="python-cost-"), "callgrind.out")
    env = {
        **os.environ,
        "LOAD_SCENARIO": scenario,
        "LOAD_REAL_HASH": "0",
        "FLASK_LOCKOUT_STORAGE_URI": redis_url,
        "FLASK_LOCKOUT_KEY_PREFIX": "python-cost",
        "FLASK_LOCKOUT_MAX_FAILURES": str(10**9),
    }
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
        + [sys.executable, "-c", CLIENT, tree, BENCH, str(count)],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return callgrind_total(out)


def per_request(tree: str, scenario: str, redis_url: str, count: int) -> float:
    # Start-up, imports and the warm-up cancel out.
    once = instructions(tree, scenario, redis_url, count)
    thrice = instructions(tree, scenario, redis_url, 3 * count)
    return (thrice - once) / (2 * count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--old", metavar="DIR", help="also measure the tree in DIR")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    args = parser.parse_args()
    trees = cost_trees(args.old)
    scenarios = [s for s in args.scenarios.split(",") if s]
    port = free_port()
    server = start_redis(port)
    try:
        print(f"CPython instructions per request ({args.requests} x 2 requests)")
        print(f"{'scenario':<12}" + "".join(f"{describe(t):>34}" for t in trees))
        bare = [0.0] * len(trees)
        for scenario in scenarios:
            counts = [
                per_request(t, scenario, f"redis://127.0.0.1:{port}/0", args.requests)
                for t in trees
            ]
            if scenario == "bare":
                bare = counts
            row = "".join(f"{count:>34,.0f}" for count in counts)
            if len(counts) == 2:
                row += f"   {counts[0] / counts[1]:.2f}x"
            if scenario != "bare" and all(bare):
                over = ", ".join(
                    f"+{c - b:,.0f}" for c, b in zip(counts, bare, strict=True)
                )
                row += f"   over bare: {over}"
            print(f"{scenario:<12}{row}", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
