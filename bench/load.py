"""Throughput and latency behind gunicorn, with and without Flask-Lockout.

    pip install -e ".[bench]" && apt-get install wrk
    python bench/load.py [--seconds 10] [--connections 32] [--redis redis://127.0.0.1:6379/0]

Serves bench/load_app.py with gunicorn (2 sync workers, 4 threads each) on a
free loopback port, once with LOCKOUT_ENABLED off and once on (Redis
storage), and drives each with wrk posting wrong passwords for rotating
accounts. Prints requests per second, p50 and p99 latency, and the ratio.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid

WRK_SCRIPT = """
counter = 0
request = function()
  counter = counter + 1
  local body = "email=user" .. (counter % 5000) .. "%40example.com&password=wrong"
  return wrk.format("POST", "/login",
    {["Content-Type"] = "application/x-www-form-urlencoded"}, body)
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError("gunicorn did not start")


def run(enabled: bool, args: argparse.Namespace, script: str) -> dict[str, float]:
    port = free_port()
    env = {
        **os.environ,
        "FLASK_LOCKOUT_ENABLED": "true" if enabled else "false",
        "FLASK_LOCKOUT_STORAGE_URI": args.redis,
        "FLASK_LOCKOUT_KEY_PREFIX": f"load-{uuid.uuid4().hex[:8]}",
        "LOAD_REAL_HASH": "1" if args.real_hash else "0",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-w",
            "2",
            "--threads",
            "4",
            "-b",
            f"127.0.0.1:{port}",
            "--chdir",
            os.path.dirname(__file__),
            "load_app:create_app()",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(port)
        subprocess.run(
            ["wrk", "-t1", "-c4", "-d2s", "-s", script, f"http://127.0.0.1:{port}"],
            check=True,
            capture_output=True,
        )
        out = subprocess.run(
            [
                "wrk",
                "-t2",
                f"-c{args.connections}",
                f"-d{args.seconds}s",
                "--latency",
                "-s",
                script,
                f"http://127.0.0.1:{port}",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    finally:
        server.terminate()
        server.wait(timeout=20)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50": _ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
        "p99": _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
        "non2xx": float(m.group(1))
        if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out))
        else 0,
        "requests": float(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
    }


def _count(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    return float(match.group(1)) if match else 0.0


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument(
        "--real-hash",
        action="store_true",
        help="check a Werkzeug scrypt hash per request",
    )
    args = parser.parse_args()
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(WRK_SCRIPT)
    results = {
        label: run(label == "enabled", args, handle.name)
        for label in ("disabled", "enabled")
    }
    os.unlink(handle.name)
    check = "scrypt hash" if args.real_hash else "sha256 compare"
    print(
        f"gunicorn 2 workers x 4 threads, wrk 2 threads x {args.connections}"
        f" connections, {args.seconds} s, password check: {check}"
    )
    for label, r in results.items():
        print(
            f"  Flask-Lockout {label:<8} {r['rps']:8.0f} req/s"
            f"  p50 {r['p50']:6.2f} ms  p99 {r['p99']:6.2f} ms"
            f"  ({r['requests']:.0f} requests, {r['non2xx']:.0f} non-2xx)"
        )
    ratio = results["enabled"]["rps"] / results["disabled"]["rps"]
    print(f"  throughput ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
