"""Helpers shared by the benchmarks; not a benchmark itself.

- :class:`CountingProxy`: a loopback TCP proxy in front of Redis that counts
  what the client really sends (round trips and top-level RESP commands),
  whatever client path the package takes to the socket.
- :func:`tree`: which Flask-Lockout is imported (the working tree or an old
  commit put first on ``PYTHONPATH``), and :func:`declare_success`, the one
  API difference the benchmarks need: since 9b637cd a view must call
  ``lockout.succeeded()`` on success, before it any 2xx was a success.
- :func:`exports`: which names the flask_lockout of a checkout has, asked
  of a Python that imports it from there, so that a benchmark sets a
  feature's settings only on trees that know them.

Run an old commit with ``git worktree add /tmp/old 7ffca6f`` and
``PYTHONPATH=/tmp/old python bench/<script>.py``.
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import flask_lockout

BENCH = os.path.dirname(os.path.abspath(__file__))


def tree() -> str:
    """Which Flask-Lockout is imported: ``new`` (this working tree) or ``old``,
    with its commit and whether its package files differ from that commit."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(flask_lockout.__file__)))
    return describe(package)


def describe(package: str) -> str:
    """``new`` or ``old``, the commit of the checkout at ``package`` and
    whether its flask_lockout differs from that commit."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    label = "new" if os.path.realpath(package) == os.path.realpath(here) else "old"
    try:
        commit = subprocess.run(
            ["git", "-C", package, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", package, "status", "--porcelain", "--", "flask_lockout"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return f"{label} ({package})"
    return f"{label} ({commit}{' + uncommitted changes' if dirty else ''})"


def declare_success(lockout: Any) -> None:
    """Tell the lockout this request authenticated, in either API."""
    succeeded = getattr(lockout, "succeeded", None)
    if succeeded is not None:  # 9b637cd and later
        succeeded()
    # before 9b637cd a 2xx response was the success


def exports(package: str, *names: str) -> dict[str, bool]:
    """Which of ``names`` the flask_lockout of the checkout at ``package``
    exports, asked of a Python that imports it from there (a benchmark that
    sets a new setting only where the tree has it: an old tree warns about
    ``LOCKOUT_*`` keys it does not know)."""
    code = (
        "import sys, flask_lockout\n"
        "print(flask_lockout.__file__)\n"
        "for name in sys.argv[1:]: print(hasattr(flask_lockout, name))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *names],
        env={**os.environ, "PYTHONPATH": package},
        # Not a checkout: python -c puts the working folder first on sys.path.
        cwd=BENCH,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    served = os.path.dirname(os.path.dirname(os.path.abspath(out[0])))
    if os.path.realpath(served) != os.path.realpath(package):
        raise RuntimeError(f"{package} imports flask_lockout from {out[0]}")
    return {name: found == "True" for name, found in zip(names, out[1:], strict=False)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(port: int) -> subprocess.Popen[bytes]:
    """A redis-server of a benchmark's own on ``port``, keeping nothing on
    disk, once it answers. It runs in a session of its own, as a service
    does: with the kernel's autogroup scheduling, a Redis in the
    benchmark's session shares one CPU group with the workers and wrk, and
    served a load run's requests in bigger batches, at about 25 µs less CPU
    each, than a service does."""
    import redis

    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1"]
        + ["--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            return process
        except redis.ConnectionError:
            time.sleep(0.1)
    process.terminate()
    raise RuntimeError("the private redis-server did not start")


def cost_trees(old: str | None) -> list[str]:
    """The trees a callgrind benchmark counts: this one, and ``old`` when
    given. Exits with what to install when valgrind or redis-server is
    missing."""
    if shutil.which("valgrind") is None or shutil.which("redis-server") is None:
        raise SystemExit("needs valgrind and redis-server: apt-get install -y valgrind")
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return [here] + ([os.path.abspath(old)] if old else [])


def callgrind_total(path: str) -> int:
    """The instructions a callgrind output file counted in all."""
    with open(path) as handle:
        for line in handle:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def spread(values: Sequence[float], fmt: str = ".2f") -> str:
    """``median [min-max]`` of a few rounds."""
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{mid:{fmt}} [{low:{fmt}}-{high:{fmt}}]"


def quartiles(values: Sequence[float], fmt: str = ".2f") -> str:
    """``median [first quartile-third quartile]`` of many rounds."""
    q1, mid, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return f"{mid:{fmt}} [{q1:{fmt}}-{q3:{fmt}}]"


class _RespCounter:
    """Counts the top-level commands in a client-to-server RESP stream."""

    def __init__(self) -> None:
        self.buffer = b""
        self.names: Counter[str] = Counter()

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while True:
            parsed = self._one(self.buffer)
            if parsed is None:
                return
            name, used = parsed
            self.names[name] += 1
            self.buffer = self.buffer[used:]

    @staticmethod
    def _one(buf: bytes) -> tuple[str, int] | None:
        if not buf:
            return None
        end = buf.find(b"\r\n")
        if end < 0:
            return None
        if buf[:1] != b"*":  # inline command
            return buf[:end].split(b" ", 1)[0].decode().upper(), end + 2
        count = int(buf[1:end])
        pos, name = end + 2, ""
        for i in range(count):
            end = buf.find(b"\r\n", pos)
            if end < 0:
                return None
            size = int(buf[pos + 1 : end])
            start = end + 2
            if len(buf) < start + size + 2:
                return None
            if i == 0:
                name = buf[start : start + size].decode().upper()
            pos = start + size + 2
        return name, pos


class CountingProxy:
    """A TCP proxy on 127.0.0.1 in front of ``target`` (Redis on loopback).

    ``writes`` counts the client's sends that reached the proxy: with a
    request-reply protocol each is one round trip (a pipeline or a script is
    one). ``commands`` counts top-level commands by name, as parsed from the
    stream, so a pipeline of three is three commands in one round trip.
    """

    def __init__(
        self, target: tuple[str, int] = ("127.0.0.1", 6379), record: bool = False
    ) -> None:
        self.target = target
        #: With ``record``, every client send, in order.
        self.sent: list[bytes] | None = [] if record else None
        self.port = free_port()
        self._lock = threading.Lock()
        self.writes = 0
        self.commands: Counter[str] = Counter()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def snapshot(self) -> tuple[int, Counter[str]]:
        with self._lock:
            return self.writes, Counter(self.commands)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            counter = _RespCounter()
            threading.Thread(
                target=self._pump, args=(client, upstream, counter), daemon=True
            ).start()
            threading.Thread(
                target=self._pump, args=(upstream, client, None), daemon=True
            ).start()

    def _pump(
        self, source: socket.socket, sink: socket.socket, counter: _RespCounter | None
    ) -> None:
        try:
            while data := source.recv(65536):
                if counter is not None:
                    with self._lock:
                        self.writes += 1
                        if self.sent is not None:
                            self.sent.append(data)
                        counter.feed(data)
                        self.commands += counter.names
                        counter.names.clear()
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._closed = True
        self._server.close()


@functools.cache
def knows_setting(package: str, key: str) -> bool:
    """Whether the flask_lockout of the checkout at ``package`` has the
    setting ``key`` (an old tree warns about keys it does not know)."""
    code = "import sys, flask_lockout.config as c; print(sys.argv[1] in c.DEFAULTS)"
    out = subprocess.run(
        [sys.executable, "-c", code, key],
        env={**os.environ, "PYTHONPATH": package},
        cwd=BENCH,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.strip() == "True"


def set_if_known(config: dict[str, object], **settings: object) -> None:
    """Set the ``settings`` the imported flask_lockout knows (an older tree
    warns about keys it does not)."""
    from flask_lockout.config import DEFAULTS

    config.update({key: value for key, value in settings.items() if key in DEFAULTS})
