"""What storage failures mean, against private Redis servers that are killed,
frozen, out of memory or evicting: never an unguarded guess by default."""

from __future__ import annotations

import time
from typing import Any

import pytest
from flask import Flask

from flask_lockout import Lockout, storage_error, storage_recovered

from .redis_proc import free_port, private_redis

pytestmark = pytest.mark.usefixtures("need_redis_server_binary")


def guarded_app(uri: str, **config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update({"LOCKOUT_STORAGE_URI": uri, "LOCKOUT_MAX_FAILURES": 3, **config})
    lockout = Lockout(app)
    app.extensions["checks"] = checks = [0]

    @app.post("/login")
    @lockout.throttled("100/minute", by="ip")
    @lockout.lockout_on_failure(by=("ip", "form:email"))
    def login() -> tuple[str, int]:
        checks[0] += 1
        return "no", 401

    @app.post("/report")
    @lockout.throttled("3/hour", by="ip")
    def report() -> str:
        return "sent"

    return app


def wrong(client: Any, email: str = "alice@example.com") -> int:
    return int(client.post("/login", data={"email": email}).status_code)


@pytest.mark.redis
def test_a_dead_redis_keeps_the_policy_in_memory_by_default() -> None:
    app = guarded_app(f"redis://127.0.0.1:{free_port()}/0")
    client = app.test_client()
    assert [wrong(client) for _ in range(8)] == [401] * 3 + [429] * 5
    assert app.extensions["checks"] == [3]  # was 8 of 8 before


@pytest.mark.redis
def test_out_of_memory_is_a_storage_failure_never_an_allow() -> None:
    with private_redis("--maxmemory", "2mb", "--maxmemory-policy", "noeviction") as s:
        filler = s.client()
        blob = "x" * 10_000
        for i in range(1000):  # fill it until it refuses writes
            try:
                filler.set(f"junk:{i}", blob)
            except Exception:
                break
        app = guarded_app(s.url)
        client = app.test_client()
        with app.app_context():
            assert app.extensions["lockout"].storage.primary.describe(deep=True)
        reports = [client.post("/report").status_code for _ in range(6)]
        assert reports == [200] * 3 + [429] * 3  # was 202 answers to a 3/hour route
        assert [wrong(client) for _ in range(5)] == [401] * 3 + [429] * 2
        assert app.extensions["lockout"].fallback_active


@pytest.mark.redis
def test_a_frozen_redis_costs_one_timeout_per_interval_not_per_request() -> None:
    with private_redis() as server:
        app = guarded_app(server.url, LOCKOUT_STORAGE_RETRY_SECONDS=30)
        client = app.test_client()
        assert wrong(client, "warm@x") == 401  # scripts loaded
        server.pause()
        try:
            timings = []
            for i in range(10):
                started = time.perf_counter()
                wrong(client, f"user{i}@x")
                timings.append(time.perf_counter() - started)
        finally:
            server.resume()
    # The first request pays the socket timeout (0.5 s, kept by the kernel on
    # the store's own connection); the breaker then answers from memory
    # without calling Redis (it was 1.5 s per request).
    assert 0.4 <= timings[0] < 1.5
    assert max(timings[1:]) < 0.2


@pytest.mark.redis
def test_recovery_is_signalled_once_and_outage_locks_keep_refusing() -> None:
    with private_redis() as server:
        app = guarded_app(server.url, LOCKOUT_STORAGE_RETRY_SECONDS=0.01)
        seen: list[str] = []
        for signal in (storage_error, storage_recovered):
            signal.connect(
                lambda s, **d: seen.append(d.get("error") and "lost" or "back"),
                app,
                weak=False,
            )
        client = app.test_client()
        assert wrong(client, "warm@x") == 401
        port = server.port
        server.stop()
        # Locked during the outage, in this process's memory.
        assert [wrong(client) for _ in range(4)] == [401] * 3 + [429]
        server.start()
        assert server.port == port
        for i in range(100):  # a probe after the retry interval
            client.post(
                "/login",
                data={"email": f"probe{i}@x"},
                environ_base={"REMOTE_ADDR": f"192.0.2.{i + 1}"},
            )
            if not app.extensions["lockout"].fallback_active:
                break
        assert not app.extensions["lockout"].fallback_active
        # Redis came back empty, yet the outage's lock still refuses.
        assert wrong(client) == 429
    assert seen == ["lost", "back"]


@pytest.mark.redis
@pytest.mark.parametrize(("mode", "expected"), [("open", 401), ("closed", 503)])
def test_the_other_fail_modes(mode: str, expected: int) -> None:
    app = guarded_app(f"redis://127.0.0.1:{free_port()}/0", LOCKOUT_FAIL_MODE=mode)
    client = app.test_client()
    assert [wrong(client) for _ in range(5)] == [expected] * 5


def run_check(uri: str) -> Any:
    app = guarded_app(uri)
    return app.test_cli_runner().invoke(args=["lockout", "check"])


@pytest.mark.redis
def test_check_reports_a_healthy_server() -> None:
    with private_redis("--maxmemory-policy", "noeviction") as server:
        result = run_check(server.url)
    assert result.exit_code == 0, result.output
    for line in ("redis 7", "round trip", "clock offset", "scripts: loaded"):
        assert line in result.output
    assert "maxmemory-policy: noeviction" in result.output
    assert "WARNING" not in result.output


@pytest.mark.redis
def test_check_warns_about_an_evicting_policy() -> None:
    with private_redis("--maxmemory-policy", "allkeys-lru") as server:
        result = run_check(server.url)
    assert result.exit_code == 0
    assert "WARNING: maxmemory-policy is allkeys-lru" in result.output


@pytest.mark.redis
def test_check_fails_on_a_dead_server() -> None:
    result = run_check(f"redis://127.0.0.1:{free_port()}/0")
    assert result.exit_code == 1
    assert "FAILED" in result.output


def test_a_missing_redis_package_fails_at_init_app(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    from flask_lockout import ConfigurationError

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "redis" else real(name, *a),
    )
    app = Flask(__name__)
    app.config["LOCKOUT_STORAGE_URI"] = "redis://localhost:6379/0"
    with pytest.raises(
        ConfigurationError, match=r'pip install "Flask-Lockout\[redis\]"'
    ):
        Lockout(app)
