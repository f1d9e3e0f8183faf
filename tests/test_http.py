"""Through a real threaded Werkzeug server on loopback, hit by concurrent clients."""

from __future__ import annotations

import http.client
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask, request
from werkzeug.serving import make_server

from flask_lockout import Lockout, storage_error

from .conftest import run_in_threads
from .redis_proc import private_redis

MAX_FAILURES = 5


def login_app(config: dict[str, Any]) -> Flask:
    app = Flask(__name__)
    app.config.update({"LOCKOUT_MAX_FAILURES": MAX_FAILURES, **config})
    lockout = Lockout(app)
    verified = Counter[str]()
    verified_lock = threading.Lock()
    app.extensions["test_verified"] = verified

    @app.post("/login")
    @lockout.throttled("1000/minute", by="form:email")
    @lockout.lockout_on_failure(by="form:email")
    def login() -> tuple[str, int]:
        time.sleep(0.005)  # hashing the password
        with verified_lock:
            verified[request.form["email"]] += 1
        return "bad credentials", 401

    return app


@contextmanager
def serving(app: Flask) -> Iterator[int]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        thread.join(timeout=10)


def post_login(port: int, email: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        body = urllib.parse.urlencode({"email": email, "password": "wrong"})
        connection.request(
            "POST",
            "/login",
            body,
            {"Content-Type": "application/x-www-form-urlencoded"},
        )
        return connection.getresponse().status
    finally:
        connection.close()


def hammer(port: int, email: str, threads: int = 8, each: int = 25) -> Counter[int]:
    statuses = Counter[int]()
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def work() -> None:
        start.wait()
        for _ in range(each):
            status = post_login(port, email)
            with lock:
                statuses[status] += 1

    run_in_threads(work, threads)
    return statuses


def test_concurrent_guesses_over_http_on_memory() -> None:
    app = login_app({})
    with serving(app) as port:
        statuses = hammer(port, "alice@example.com")
    assert app.extensions["test_verified"]["alice@example.com"] == MAX_FAILURES
    assert statuses[401] == MAX_FAILURES
    assert statuses[429] == 8 * 25 - MAX_FAILURES


@pytest.mark.redis
def test_concurrent_guesses_over_http_on_redis(
    redis_server: str, redis_prefix: str
) -> None:
    app = login_app(
        {"LOCKOUT_STORAGE_URI": redis_server, "LOCKOUT_KEY_PREFIX": redis_prefix}
    )
    with serving(app) as port:
        statuses = hammer(port, "alice@example.com")
    assert app.extensions["test_verified"]["alice@example.com"] == MAX_FAILURES
    assert sum(n for status, n in statuses.items() if status >= 500) == 0
    assert statuses[401] + statuses[429] == 8 * 25


def outage_run(mode: str) -> tuple[Counter[int], Counter[int], Counter[int], int]:
    with private_redis() as server:
        app = login_app(
            {
                "LOCKOUT_STORAGE_URI": server.url,
                "LOCKOUT_FAIL_MODE": mode,
                # Probe again at once: the restarted server answers the next call.
                "LOCKOUT_STORAGE_RETRY_SECONDS": 0.01,
            }
        )
        errors: list[object] = []
        storage_error.connect(
            lambda sender, **data: errors.append(data), app, weak=False
        )
        with serving(app) as port:
            before = hammer(port, "before@example.com", threads=4, each=5)
            server.stop()
            during = hammer(port, "during@example.com", threads=4, each=5)
            server.start()  # same port, no app restart
            for attempt in range(100):  # the first probe after the interval
                post_login(port, f"probe{attempt}@example.com")
                if not app.extensions["lockout"].fallback_active:
                    break
            after = hammer(port, "after@example.com", threads=4, each=5)
        return before, during, after, len(errors)


@pytest.mark.redis
def test_outage_fail_open_serves_everything_and_recovers(
    need_redis_server_binary: None,
) -> None:
    before, during, after, errors = outage_run("open")
    assert before == Counter({401: MAX_FAILURES, 429: 20 - MAX_FAILURES})
    assert during == Counter({401: 20})  # unguarded, but never a 5xx
    assert errors == 1  # one signal for the outage, not one per request
    assert after == Counter({401: MAX_FAILURES, 429: 20 - MAX_FAILURES})


@pytest.mark.redis
def test_outage_in_memory_mode_keeps_the_policy(
    need_redis_server_binary: None,
) -> None:
    before, during, after, errors = outage_run("memory")
    locked = Counter({401: MAX_FAILURES, 429: 20 - MAX_FAILURES})
    assert before == during == after == locked
    assert errors == 1


@pytest.mark.redis
def test_outage_fail_closed_answers_503_and_recovers(
    need_redis_server_binary: None,
) -> None:
    before, during, after, _ = outage_run("closed")
    assert before == Counter({401: MAX_FAILURES, 429: 20 - MAX_FAILURES})
    assert during == Counter({503: 20})
    assert after == Counter({401: MAX_FAILURES, 429: 20 - MAX_FAILURES})
