"""Memory storage under a multi-process server warns, once per process, that
every process counts on its own."""

from __future__ import annotations

import logging
from typing import Any

import fakeredis
import pytest
from flask import Flask

from flask_lockout import Lockout

MULTI = {"wsgi.multiprocess": True}


def app_with(**kwargs: Any) -> Flask:
    app = Flask(__name__)
    lockout = Lockout(app, **kwargs)

    @app.post("/login")
    @lockout.lockout_on_failure(by="form:email")
    def login() -> tuple[str, int]:
        return "no", 401

    return app


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "flask_lockout" and "multi-process" in r.getMessage()
    ]


def test_memory_under_several_processes_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="flask_lockout")
    client = app_with().test_client()
    client.post("/login", data={"email": "a@x"}).close()
    assert warnings(caplog) == []  # one process: nothing to say
    for _ in range(3):
        client.post("/login", data={"email": "a@x"}, environ_overrides=MULTI).close()
    [message] = warnings(caplog)
    assert "N budgets" in message and "LOCKOUT_STORAGE_URI" in message
    assert "redis://" in message


def test_redis_under_several_processes_says_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="flask_lockout")
    client = app_with(storage=fakeredis.FakeRedis()).test_client()
    client.post("/login", data={"email": "a@x"}, environ_overrides=MULTI).close()
    assert warnings(caplog) == []


def test_each_app_on_memory_warns_for_itself(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="flask_lockout")
    for app in (app_with(), app_with()):
        app.test_client().get("/", environ_overrides=MULTI).close()
    assert len(warnings(caplog)) == 2
