"""Private redis-server processes on free loopback ports, for tests that stop,
restart or cluster Redis. Each is stopped by its pid."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis

HOST = "127.0.0.1"


def redis_server_available() -> bool:
    return shutil.which("redis-server") is not None


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A free loopback port whose cluster bus port (port + 10000) is free too."""
    for _ in range(200):
        port = random.randint(20000, 40000)
        if _is_free(port) and _is_free(port + 10000):
            return port
    raise RuntimeError("no free loopback port found")


def _wait_until(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise RuntimeError(f"timed out waiting for {what}")


class RedisProcess:
    """One redis-server that keeps nothing on disk."""

    def __init__(self, port: int | None = None, *extra: str) -> None:
        self.port = port or free_port()
        self.extra = extra
        self.dir = tempfile.mkdtemp(prefix="lockout-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def client(self, **kwargs: object) -> redis.Redis:
        return redis.Redis(host=HOST, port=self.port, **kwargs)  # type: ignore[arg-type]

    def start(self) -> RedisProcess:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                HOST,
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        probe = self.client(socket_timeout=0.2, socket_connect_timeout=0.2)

        def answers() -> bool:
            try:
                return bool(probe.ping())
            except redis.RedisError:
                return False

        _wait_until(answers, 10, f"redis-server on port {self.port}")
        probe.close()
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): it accepts nothing and answers nothing."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def private_redis(*extra: str) -> Iterator[RedisProcess]:
    server = RedisProcess(None, *extra).start()
    try:
        yield server
    finally:
        if server.proc is not None and server.proc.poll() is None:
            os.kill(server.proc.pid, signal.SIGCONT)
        server.cleanup()


@contextmanager
def private_cluster(nodes: int = 3) -> Iterator[list[RedisProcess]]:
    """A Redis Cluster of ``nodes`` masters on free loopback ports."""
    servers: list[RedisProcess] = []
    try:
        for _ in range(nodes):
            server = RedisProcess(
                None,
                "--cluster-enabled",
                "yes",
                "--cluster-node-timeout",
                "2000",
            )
            server.extra = (
                *server.extra,
                "--cluster-config-file",
                os.path.join(server.dir, "nodes.conf"),
            )
            servers.append(server.start())
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *[f"{HOST}:{s.port}" for s in servers],
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )

        def ready() -> bool:
            info = servers[0].client().cluster("info")
            return isinstance(info, dict) and info.get("cluster_state") == "ok"

        _wait_until(ready, 30, "the cluster to report ok")
        yield servers
    finally:
        for server in servers:
            server.cleanup()
