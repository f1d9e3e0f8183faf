"""The command line as a newcomer meets it: enforcement switched off is said
first, failure counts say what they count, and ``reset --all`` scripts."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest
from flask import Flask

from flask_lockout import Lockout, RedisStorage

ALICE = "login:email:alice@example.com"


def make_app(*, memory: bool = False, **config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(config)
    storage = None if memory else RedisStorage(fakeredis.FakeRedis(), prefix="cli")
    Lockout(app, storage=storage)
    return app


def run_cli(app: Flask, *args: str, input: str | None = None) -> Any:
    return app.test_cli_runner().invoke(args=["lockout", *args], input=input)


def fail(app: Flask, key: str, times: int) -> None:
    with app.app_context():
        for _ in range(times):
            app.extensions["lockout"].extension.record_failure(key)


@pytest.mark.parametrize("command", ["check", "policy"])
def test_enforcement_off_is_said_first(command: str) -> None:
    result = run_cli(make_app(memory=True, LOCKOUT_ENABLED=False), command)
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[0]
    assert first.startswith("ENFORCEMENT IS OFF") and "LOCKOUT_ENABLED = False" in first


@pytest.mark.parametrize("command", ["check", "policy"])
def test_enforcement_on_says_nothing_of_it(command: str) -> None:
    result = run_cli(make_app(memory=True), command)
    assert result.exit_code == 0 and "ENFORCEMENT IS OFF" not in result.output


def test_status_of_a_locked_key_shows_the_failures_that_locked_it() -> None:
    app = make_app(LOCKOUT_MAX_FAILURES=5, LOCKOUT_IP_MAX_FAILURES=5)
    fail(app, ALICE, 5)
    output = run_cli(app, "status", ALICE).output
    assert (
        "locked by:          5 failures, each within 86400 s of the one before"
        in output
    )
    assert "failures in window: 0 (a lock starts the count again)" in output


def test_status_after_a_lock_on_probation_counts_every_failure() -> None:
    app = make_app(LOCKOUT_MAX_FAILURES=5, LOCKOUT_IP_MAX_FAILURES=5)
    fail(app, ALICE, 5)
    with app.app_context():
        app.extensions["lockout"].storage.lockout_unlock(
            ALICE, app.extensions["lockout"].settings.policy
        )
    fail(app, ALICE, 1)
    output = run_cli(app, "status", ALICE).output
    assert "locked by:          6 failures since the key was clean" in output
    assert "then 1 on probation" in output


def test_status_of_a_failing_key_counts_toward_the_lock() -> None:
    app = make_app(LOCKOUT_MAX_FAILURES=5, LOCKOUT_IP_MAX_FAILURES=5)
    fail(app, ALICE, 2)
    output = run_cli(app, "status", ALICE).output
    assert "failures in window: 2 of 5, counted toward the next lock" in output
    assert "locked by" not in output


def test_list_shows_no_zero_for_a_locked_key_and_says_what_it_counts() -> None:
    app = make_app(LOCKOUT_MAX_FAILURES=5, LOCKOUT_IP_MAX_FAILURES=5)
    fail(app, ALICE, 5)
    fail(app, "login:email:bob@example.com", 2)
    lines = run_cli(app, "list").output.splitlines()
    alice = next(line for line in lines if line.startswith(ALICE)).split()
    bob = next(line for line in lines if line.startswith("login:email:bob")).split()
    assert alice[1:3] == ["-", "1"] and bob[1:3] == ["2", "0"]
    assert lines[-1].startswith("FAILURES: failures in the current window")
    assert "5 lock a key" in lines[-1]


def test_reset_all_with_yes_asks_nothing() -> None:
    app = make_app()
    fail(app, ALICE, 2)
    result = run_cli(app, "reset", "--all", "--yes")
    assert result.exit_code == 0, result.output
    assert "Forget every" not in result.output
    assert "No key is failing or locked." in run_cli(app, "list").output
    fail(app, ALICE, 2)
    assert run_cli(app, "reset", "--all", "-y").exit_code == 0
    assert run_cli(app, "reset", "--all", input="n\n").exit_code == 1
