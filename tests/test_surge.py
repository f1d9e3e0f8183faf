"""Surge defence (DESIGN §3.1): credential stuffing and spraying from fresh
addresses, detected per scope and held to the scope's usual rate of logins
from new devices, while known devices notice nothing. Memory on a stepped
clock here; Redis, shared by processes, at the end."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any
from unittest import mock

import fakeredis
import pytest
import redis
from flask import Flask, request
from flask.testing import FlaskClient
from hypothesis import example, given, settings
from hypothesis import strategies as st

from flask_lockout import (
    ConfigurationError,
    Lockout,
    MemoryStorage,
    RedisStorage,
    new_device_login,
    surge_ended,
    surge_started,
)
from flask_lockout.surge import SurgeRecord, SurgeRules

from .conftest import FakeClock

PASSWORDS = {f"user{n}@x": f"pw{n}" for n in range(400)}
_addresses = itertools.count(1)


def fresh_address() -> str:
    """A new address in one of many networks, as a botnet's."""
    n = next(_addresses)
    return f"10.{n // 250 % 250}.{n % 250}.{n % 200 + 1}"


def surge_app(storage: Any = None, **config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="test secret",
        LOCKOUT_COOKIE_SECURE=False,
        LOCKOUT_SURGE_COOLDOWN_SECONDS=600,
        **config,
    )
    lockout = Lockout(app, storage=storage)

    def verify() -> bool:
        return request.form.get("captcha") == "solved"

    @app.post("/login")
    @lockout.lockout_on_failure(
        by=("ip", "form:email"), scope="login", challenge=verify
    )
    def login() -> tuple[dict[str, Any], int]:
        shown = lockout.challenge_required()
        if PASSWORDS.get(request.form["email"]) == request.form["password"]:
            lockout.succeeded()
            return {"ok": True, "challenge": shown}, 200
        return {"ok": False, "challenge": shown}, 401

    return app


def attempt(
    client: FlaskClient,
    email: str,
    password: str,
    address: str | None = None,
    **form: str,
) -> Any:
    return client.post(
        "/login",
        data={"email": email, "password": password, **form},
        environ_base={"REMOTE_ADDR": address or fresh_address()},
        headers={"Accept": "application/json"},
    )


def stuff(app: Flask, count: int, start: int = 0) -> list[int]:
    """``count`` leaked pairs, each account once, each from a fresh address."""
    return [
        attempt(app.test_client(), f"user{n}@x", "leaked").status_code
        for n in range(start, start + count)
    ]


@pytest.fixture
def clock() -> FakeClock:
    # On a minute's start: a minute's counts are the test's own.
    return FakeClock(1_000_020.0)


@pytest.fixture
def events() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    seen: list[tuple[str, dict[str, Any]]] = []

    def started(sender: Flask, **data: Any) -> None:
        seen.append(("started", data))

    def ended(sender: Flask, **data: Any) -> None:
        seen.append(("ended", data))

    surge_started.connect(started)
    surge_ended.connect(ended)
    yield seen
    surge_started.disconnect(started)
    surge_ended.disconnect(ended)


def test_stuffing_from_fresh_addresses_starts_a_surge_within_the_minute(
    clock: FakeClock, events: list[tuple[str, dict[str, Any]]]
) -> None:
    app = surge_app(MemoryStorage(clock=clock))
    answers = stuff(app, 61)
    assert answers == [401] * 61  # the 61st failure starts it
    assert events == [
        ("started", {"scope": "login", "failures_per_minute": 61, "threshold": 60})
    ]
    # From now on attempts without a device cookie share the scope's
    # allowance (10 a minute), already spent by the attack's own attempts.
    assert stuff(app, 5, start=100) == [429] * 5
    with app.app_context():
        lockout: Lockout = app.extensions["lockout"].extension
        assert lockout.surge_active("login")
        assert [e["kind"] for e in lockout.events()][:1] == ["surge_started"]


def test_the_allowance_holds_a_botnet_to_the_scopes_usual_rate(
    clock: FakeClock,
) -> None:
    app = surge_app(MemoryStorage(clock=clock))
    stuff(app, 61)
    reached = 0
    for minute in range(10):
        clock.now = 1_000_020.0 + 60 * (minute + 1)
        reached += stuff(app, 300, start=0).count(401)
    # Ten minutes at 300 a minute: about ten a minute reach the check.
    assert reached <= 10 * 10


def test_a_refused_attack_keeps_the_surge_on_and_a_quiet_scope_ends_it(
    clock: FakeClock, events: list[tuple[str, dict[str, Any]]]
) -> None:
    app = surge_app(MemoryStorage(clock=clock))
    stuff(app, 61)
    for minute in range(1, 15):  # refused, but still coming
        clock.now = 1_000_020.0 + 60 * minute
        stuff(app, 70, start=1000 + 70 * minute)
    assert [kind for kind, _ in events] == ["started"]
    clock.advance(601)  # quiet for the cooldown
    assert attempt(app.test_client(), "user1@x", "pw1").status_code == 200
    assert [kind for kind, _ in events] == ["started", "ended"]


def test_known_devices_are_decided_as_before_during_a_surge(
    clock: FakeClock,
) -> None:
    app = surge_app(MemoryStorage(clock=clock))
    owner = app.test_client()
    home = "192.0.2.10"
    assert attempt(owner, "user7@x", "pw7", home).status_code == 200  # a cookie
    stuff(app, 80, start=100)
    # Her own typo and her login, from a new address (a phone on the road).
    assert attempt(owner, "user7@x", "typo", "192.0.2.99").status_code == 401
    assert attempt(owner, "user7@x", "pw7", "192.0.2.99").status_code == 200
    # Without the cookie, the same login waits for the allowance.
    refused = attempt(app.test_client(), "user7@x", "pw7", home)
    assert refused.status_code == 429
    assert refused.json["retry_after"] >= 1


def test_a_passed_challenge_lifts_the_surge_limits_never_the_policy(
    clock: FakeClock,
) -> None:
    app = surge_app(MemoryStorage(clock=clock))
    stuff(app, 61)
    stranger = app.test_client()
    refused = attempt(stranger, "user8@x", "pw8", "198.51.100.8")
    assert refused.status_code == 429
    assert refused.json["challenge_required"] is True
    passed = attempt(stranger, "user8@x", "pw8", "198.51.100.8", captcha="solved")
    assert passed.status_code == 200 and passed.json["challenge"] is False
    # The policy still holds for challenge-takers: the fifth typo locks.
    typos = [
        attempt(stranger, "user390@x", "typo", f"198.51.100.{n}", captcha="solved")
        for n in range(20, 26)
    ]
    assert [t.status_code for t in typos] == [401] * 5 + [429]
    assert "challenge_required" not in typos[-1].json


def test_the_view_is_told_to_show_the_challenge_while_an_attempt_gets_through(
    clock: FakeClock,
) -> None:
    app = surge_app(MemoryStorage(clock=clock))
    stuff(app, 55)
    clock.advance(60)  # a new minute: the allowance has room
    stuff(app, 61, start=200)  # the surge starts with this minute's 61st
    clock.advance(60)
    answer = attempt(app.test_client(), "user3@x", "typo", "198.51.100.3")
    assert answer.status_code == 401 and answer.json["challenge"] is True


def a_day_of(record: SurgeRecord, now: float, failures: int, successes: int) -> float:
    """A day of ``failures`` a minute and ``successes`` from new devices."""
    for _ in range(1440):
        for _ in range(failures):
            record.count(RULES, now, True)
        for _ in range(successes):
            record.count(RULES, now, True)
            record.succeeded(now, True)
        now += 60
    return now


RULES = SurgeRules()


def test_the_usual_rate_raises_the_bar() -> None:
    record = SurgeRecord()
    now = a_day_of(record, 60.0 * 100_000, failures=30, successes=0)
    # About 30 a minute is usual by now: 5 x that is the bar, not 60.
    assert 140 <= record.threshold(RULES) <= 150
    for _ in range(140):
        record.count(RULES, now, True)
    assert not record.on
    for _ in range(15):
        record.count(RULES, now, True)
    assert record.on


def test_an_attack_ramping_up_under_the_bar_raises_it_only_slowly() -> None:
    record = SurgeRecord()
    now = a_day_of(record, 60.0 * 100_000, failures=3, successes=1)
    allowance = record.allowance()
    guesses = 0
    for _ in range(180):  # three hours exactly at the bar, never above it
        bar = record.threshold(RULES)
        for _ in range(bar):
            record.count(RULES, now, True)
        guesses += bar
        assert not record.on
        now += 60
    # Bounded by the day's average: a ramp on the hour's alone doubled the
    # bar every 11 minutes (hundreds of thousands of guesses in 3 hours).
    assert guesses < 20_000 and record.threshold(RULES) < 200
    # Failed attempts never raise the allowance: successes teach it.
    assert record.allowance() == allowance


def test_the_allowance_opens_evenly_over_the_minute() -> None:
    record = SurgeRecord()
    start = 60.0 * 100_000  # a minute's start
    record.start(RULES, start, 3600)
    # A burst at the minute's start takes one attempt, not the minute's ten.
    burst = []
    for _ in range(10):
        burst.append(record.check(RULES, start, False))
        if not burst[-1].refused:
            record.count(RULES, start, True)
    assert [b.refused for b in burst] == [False] + [True] * 9
    assert 5 < burst[1].retry_after <= 6  # the next one opens 6 s on
    # Real users arriving every 6 s after it each find room.
    for second in range(6, 60, 6):
        assert not record.check(RULES, start + second, False).refused
        record.count(RULES, start + second, True)


@pytest.mark.redis
def test_operators_start_and_end_a_surge(
    redis_server: str, redis_prefix: str, events: list[tuple[str, dict[str, Any]]]
) -> None:
    # The command line reaches a running server's state through Redis.
    app = surge_app(LOCKOUT_STORAGE_URI=redis_server, LOCKOUT_KEY_PREFIX=redis_prefix)
    runner = app.test_cli_runner()
    start_of_a_minute(redis_server)
    result = runner.invoke(args=["lockout", "surge", "start", "login"])
    assert result.exit_code == 0, result.output
    assert "login" in runner.invoke(args=["lockout", "check"]).output
    assert attempt(app.test_client(), "user1@x", "pw1").status_code == 200
    for n in range(10):  # the allowance: 10 a minute from devices without a cookie
        attempt(app.test_client(), f"user{20 + n}@x", "typo")
    assert attempt(app.test_client(), "user1@x", "pw1").status_code == 429
    assert runner.invoke(args=["lockout", "surge", "end", "login"]).exit_code == 0
    assert attempt(app.test_client(), "user1@x", "pw1").status_code == 200
    assert [kind for kind, _ in events] == ["started", "ended"]
    bad = runner.invoke(args=["lockout", "surge", "start", "log:in"])
    assert bad.exit_code == 2


def test_with_surges_off_nothing_is_counted_or_started(clock: FakeClock) -> None:
    app = surge_app(MemoryStorage(clock=clock), LOCKOUT_SURGE=False)
    assert stuff(app, 200) == [401] * 200
    with app.app_context(), pytest.raises(RuntimeError, match="LOCKOUT_SURGE"):
        app.extensions["lockout"].extension.start_surge("login")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("LOCKOUT_SURGE_MIN_FAILURES", 0),
        ("LOCKOUT_SURGE_MIN_FAILURES", "many"),
        ("LOCKOUT_SURGE_FACTOR", 0.5),
        ("LOCKOUT_SURGE_FACTOR", "x"),
        ("LOCKOUT_SURGE_COOLDOWN_SECONDS", -1),
        ("LOCKOUT_SURGE_LIMITS", "3 a fortnight"),
        ("LOCKOUT_SURGE_NETWORK_LIMITS", ""),
        ("LOCKOUT_SURGE", "sometimes"),
        ("LOCKOUT_ACCOUNT_WINDOW_SECONDS", 60),
        ("LOCKOUT_IP_MAX_FAILURES", 0),
    ],
)
def test_every_new_setting_is_checked_at_init_app(key: str, value: object) -> None:
    app = Flask(__name__)
    app.config[key] = value
    with pytest.raises(ConfigurationError, match=key):
        Lockout(app)


def test_a_flood_of_fresh_addresses_never_grows_the_surge_state(
    clock: FakeClock,
) -> None:
    storage = MemoryStorage(clock=clock)
    app = surge_app(storage)
    stuff(app, 300)
    assert list(storage.surge_scopes()) == ["login"]


def test_a_login_from_a_new_device_is_signalled_with_its_user_agent(
    clock: FakeClock,
) -> None:
    app = surge_app(MemoryStorage(clock=clock))
    seen: list[dict[str, Any]] = []

    def told(sender: Flask, **data: Any) -> None:
        seen.append(data)

    new_device_login.connect(told)
    try:
        client = app.test_client()
        hostile = "<script>alert(1)</script>" + "x" * 2000
        client.post(
            "/login",
            data={"email": "user5@x", "password": "pw5"},
            headers={"User-Agent": hostile},
            environ_base={"REMOTE_ADDR": "192.0.2.5"},
        )
        attempt(client, "user5@x", "pw5", "192.0.2.5")  # now a known device
        attempt(client, "user5@x", "typo", "192.0.2.5")
    finally:
        new_device_login.disconnect(told)
    assert len(seen) == 1
    assert seen[0]["key"] == "login:email:user5@x"
    assert seen[0]["client_ip"] == "192.0.2.5"
    assert seen[0]["user_agent"] == hostile[:512]


def test_a_known_device_has_its_own_allowance_on_throttled_ip_keys() -> None:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="s", LOCKOUT_COOKIE_SECURE=False)
    lockout = Lockout(app)

    @app.post("/login")
    @lockout.throttled("10/minute", by=("ip", "form:email"))
    @lockout.lockout_on_failure(by=("ip", "form:email"), scope="login")
    def login() -> tuple[str, int]:
        if PASSWORDS.get(request.form["email"]) == request.form["password"]:
            lockout.succeeded()
            return "ok", 200
        return "no", 401

    office = "203.0.113.50"
    owner = app.test_client()
    assert attempt(owner, "user1@x", "pw1", office).status_code == 200
    attacker = app.test_client()
    for _ in range(10):  # logs into his own account from the same office
        attempt(attacker, "user2@x", "pw2", office)
    assert attempt(attacker, "user2@x", "pw2", office).status_code == 429
    assert attempt(owner, "user1@x", "pw1", office).status_code == 200


# -- the Lua script holds to the Python model ------------------------------------

surge_ops = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["check", "check-exempt"]), st.just(0)),
        st.tuples(st.sampled_from(["count", "count-known"]), st.just(0)),
        st.tuples(
            st.sampled_from(["success", "success-known", "status", "end"]), st.just(0)
        ),
        st.tuples(st.just("start"), st.integers(1, 900)),
        st.tuples(st.just("advance"), st.integers(0, 400)),
        st.tuples(st.just("burst"), st.integers(1, 100)),
    ),
    max_size=50,
)


@settings(max_examples=150, deadline=None)
@example(  # the usual rate: a busy minute folded in raises the bar
    ops=[("burst", 100), ("advance", 70), ("status", 0), ("burst", 100)],
    rules=SurgeRules(150, 50.0, 600.0),
)
@example(  # minutes in a surge are left out of the usual rate
    ops=[("burst", 100), ("advance", 70), ("burst", 5), ("advance", 700)],
    rules=SurgeRules(8, 5.0, 30.0),
)
@given(
    ops=surge_ops,
    rules=st.builds(
        SurgeRules,
        min_failures=st.sampled_from([1, 3, 8, 150]),
        factor=st.sampled_from([1.0, 5.0, 50.0]),
        cooldown_seconds=st.sampled_from([0.0, 30.0, 600.0]),
    ),
)
def test_the_surge_script_matches_the_model(
    ops: list[tuple[str, int]], rules: SurgeRules
) -> None:
    clock = FakeClock(1_700_000_000.0)
    with mock.patch.object(time, "time", clock):
        stores = [
            MemoryStorage(clock=clock),
            RedisStorage(fakeredis.FakeRedis(), prefix="surge"),
        ]
        for op, arg in ops:
            if op == "advance":
                clock.advance(arg)
                continue
            answers = []
            for store in stores:
                if op.startswith("check"):
                    found = store.surge_check("s", rules, op == "check-exempt")
                elif op.startswith("count"):
                    found = store.surge_count("s", rules, op == "count")
                elif op == "burst":
                    for _ in range(arg):
                        found = store.surge_count("s", rules, True)
                elif op.startswith("success"):
                    store.surge_succeeded("s", rules, op == "success")
                    found = store.surge_status("s", rules)
                elif op == "start":
                    found = store.surge_start("s", rules, arg)
                elif op == "end":
                    found = store.surge_end("s", rules)
                else:
                    found = store.surge_status("s", rules)
                answers.append(
                    found._replace(
                        seconds_left=round(found.seconds_left),
                        retry_after=round(found.retry_after),
                    )
                )
            assert answers[0] == answers[1], (op, arg)


# -- Redis: one surge for every process, in the decision's own round trip ----------


def start_of_a_minute(redis_url: str) -> None:
    """Wait, on the server's clock, for a minute with room for the test (a
    surge counts failures a minute): a margin, not a guess."""
    client = redis.Redis.from_url(redis_url)
    seconds, _ = client.time()
    client.close()
    if seconds % 60 > 40:
        time.sleep(61 - seconds % 60)


@pytest.mark.redis
def test_processes_on_one_redis_see_one_surge_started_once(
    redis_server: str, redis_prefix: str, events: list[tuple[str, dict[str, Any]]]
) -> None:
    config = {"LOCKOUT_STORAGE_URI": redis_server, "LOCKOUT_KEY_PREFIX": redis_prefix}
    workers = [surge_app(**config), surge_app(**config)]
    start_of_a_minute(redis_server)
    for n in range(70):  # the attack spread over both workers
        attempt(workers[n % 2].test_client(), f"user{n}@x", "leaked")
    assert [kind for kind, _ in events] == ["started"]
    for worker in workers:
        with worker.app_context():
            assert worker.extensions["lockout"].extension.surge_active("login")
    answers = [
        attempt(w.test_client(), "user300@x", "pw300").status_code for w in workers
    ]
    assert answers == [429, 429]
    with workers[0].app_context():
        workers[0].extensions["lockout"].extension.end_surge("login")
    assert attempt(workers[1].test_client(), "user300@x", "pw300").status_code == 200


@pytest.mark.redis
def test_surge_counting_costs_no_round_trip(
    redis_server: str, redis_prefix: str, round_trips: list[int]
) -> None:
    app = surge_app(
        LOCKOUT_STORAGE_URI=redis_server,
        LOCKOUT_KEY_PREFIX=redis_prefix,
    )
    client = app.test_client()
    attempt(client, "warm@x", "typo")  # scripts loaded, connection open

    def trips(*args: Any) -> tuple[int, int]:
        round_trips[0] = 0
        return attempt(*args).status_code, round_trips[0]

    assert trips(client, "user1@x", "typo") == (401, 1)  # wrong password: 1
    assert trips(client, "user1@x", "pw1", "192.0.2.1") == (200, 2)  # success: 2
    assert trips(client, "user1@x", "typo", "192.0.2.1") == (401, 1)  # known device


def test_the_dashboard_overview_shows_a_banner_during_a_surge(
    clock: FakeClock,
) -> None:
    app = surge_app(MemoryStorage(clock=clock))
    lockout: Lockout = app.extensions["lockout"].extension
    app.register_blueprint(lockout.dashboard_blueprint(lambda: True))
    assert "Surge on" not in app.test_client().get("/lockout/").text
    stuff(app, 61)
    page = app.test_client().get("/lockout/").text
    assert "Surge on <code>login</code>" in page and "threshold 60" in page
