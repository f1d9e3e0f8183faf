from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Blueprint, Flask, Response, abort, jsonify, request
from flask.views import MethodView
from werkzeug.exceptions import HTTPException

from flask_lockout import (
    ConfigurationError,
    Lockout,
    MemoryStorage,
    Storage,
    failure_recorded,
    locked_out,
    lockout_reset,
    rate_limited,
    storage_error,
)
from flask_lockout.errors import TooManyAttempts

from .redis_proc import free_port

PASSWORDS = {"alice@example.com": "right", "bob@example.com": "bobs"}


def make_app(config: dict[str, Any] | None = None, storage: object = None) -> Flask:
    app = Flask(__name__)
    app.config.update(
        {
            "TESTING": True,
            "LOCKOUT_MAX_FAILURES": 3,
            "LOCKOUT_IP_MAX_FAILURES": 3,
            **(config or {}),
        }
    )
    lockout = Lockout(storage=storage)
    app.extensions["test_verified"] = []

    @app.post("/login")
    @lockout.lockout_on_failure(by=("ip", "form:email"))
    def login() -> tuple[str, int]:
        app.extensions["test_verified"].append(request.form["email"])
        email = request.form["email"].strip().casefold()
        if PASSWORDS.get(email) == request.form.get("password"):
            lockout.succeeded()
            return "welcome", 200
        return "bad credentials", 401

    @app.post("/api/login")
    @lockout.lockout_on_failure(by="json:username")
    def api_login() -> Any:
        body = request.get_json()
        if body.get("password") == "right":
            lockout.succeeded()
            return jsonify(ok=True)
        abort(401)

    @app.post("/boom")
    @lockout.lockout_on_failure(by="form:email")
    def boom() -> str:
        raise RuntimeError("the view broke")

    @app.post("/async")
    @lockout.lockout_on_failure(by="form:email")
    async def async_login() -> tuple[str, int]:
        if request.form.get("password") == "right":
            lockout.succeeded()
            return "welcome", 200
        return "no", 401

    class OtpView(MethodView):
        decorators = [lockout.lockout_on_failure(by="view_arg:user")]

        def post(self, user: str) -> tuple[str, int]:
            if request.form.get("code") == "123456":
                lockout.succeeded()
                return "ok", 200
            return "no", 403

    app.add_url_rule("/otp/<user>", view_func=OtpView.as_view("otp"))

    @app.get("/search")
    @lockout.throttled("2/minute")
    def search() -> str:
        return "results"

    @app.post("/reset-password")
    @lockout.throttled("2/minute;10/day", by=("ip", "form:email"))
    def reset_password() -> str:
        return "sent"

    @app.get("/default")
    @lockout.throttled()
    def default_limited() -> str:
        return "ok"

    @app.get("/exempt")
    @lockout.throttled("1/minute", exempt_when=lambda: request.args.get("vip") == "1")
    def exempt() -> str:
        return "ok"

    lockout.init_app(app)
    return app


def wrong(client: Any, email: str = "alice@example.com", **kwargs: Any) -> Any:
    return client.post("/login", data={"email": email, "password": "nope"}, **kwargs)


def api_wrong(client: Any) -> Any:
    return client.post("/api/login", json={"username": "u", "password": "x"})


@contextmanager
def captured(*signals: Any) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    seen: list[tuple[str, dict[str, Any]]] = []
    receivers = []
    for signal in signals:

        def receiver(sender: Any, _name: str = signal.name, **data: Any) -> None:
            seen.append((_name, data))

        receivers.append(receiver)
        signal.connect(receiver)
    try:
        yield seen
    finally:
        for signal, receiver in zip(signals, receivers, strict=True):
            signal.disconnect(receiver)


# -- set-up ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("LOCKOUT_MAX_FAILURES", 0),
        ("LOCKOUT_MAX_FAILURES", "five"),
        ("LOCKOUT_WINDOW_SECONDS", -1),
        ("LOCKOUT_BACKOFF_MULTIPLIER", 0.5),
        ("LOCKOUT_MAX_LOCK_SECONDS", 1),
        ("LOCKOUT_STORAGE_URI", "mongodb://nope"),
        ("LOCKOUT_DEFAULT_LIMITS", "lots/min"),
        ("LOCKOUT_ENABLED", "maybe"),
        ("LOCKOUT_FAIL_MODE", "sometimes"),
        ("LOCKOUT_FAIL_OPEN", False),
        ("LOCKOUT_STORAGE_RETRY_SECONDS", 0),
        ("LOCKOUT_EVENTS_MAX", 0),
        ("LOCKOUT_METRICS", "perhaps"),
        ("LOCKOUT_TRUSTED_PROXIES", ["10.0.0.0/33"]),
        ("LOCKOUT_TRUSTED_HEADER", "X-Client-IP"),
        ("LOCKOUT_IPV6_PREFIX", 129),
        ("LOCKOUT_COOKIE_SAMESITE", "sometimes"),
        ("LOCKOUT_KEY_PREFIX", "a{b}"),
        ("LOCKOUT_LOCAL_CACHE_SECONDS", -1),
        ("LOCKOUT_MEMORY_MAX_KEYS", 0),
        ("LOCKOUT_STATIC_SECURITY_HEADERS", ["nosniff"]),
    ],
)
def test_bad_config_fails_at_init_app_naming_the_key(key: str, value: object) -> None:
    app = Flask(__name__)
    app.config[key] = value
    with pytest.raises(ConfigurationError, match=key):
        Lockout(app)
    assert "lockout" not in app.extensions


def test_config_from_environment_strings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASK_LOCKOUT_MAX_FAILURES", "7")
    monkeypatch.setenv("FLASK_LOCKOUT_FAIL_MODE", "closed")
    monkeypatch.setenv("FLASK_LOCKOUT_HEADERS_ENABLED", "0")
    monkeypatch.setenv("FLASK_LOCKOUT_DEVICE_COOKIES", "1")
    monkeypatch.setenv("FLASK_SECRET_KEY", "s3cret")
    monkeypatch.setenv("FLASK_LOCKOUT_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.0.0/16")
    app = Flask(__name__)
    app.config.from_prefixed_env()
    Lockout(app)
    state = app.extensions["lockout"]
    settings = state.settings
    assert settings.policy.max_failures == 7
    assert settings.fail_mode == "closed"
    assert settings.headers_enabled is False
    assert state.device_cookies is True
    assert len(settings.trusted_proxies) == 2
    assert app.config["LOCKOUT_BASE_LOCK_SECONDS"] == 60  # defaults written back


def test_unknown_lockout_keys_are_warned_about_with_the_nearest() -> None:
    app = Flask(__name__)
    app.config["LOCKOUT_MAX_FAILURE"] = 3
    with pytest.warns(UserWarning, match="LOCKOUT_MAX_FAILURE .*LOCKOUT_MAX_FAILURES"):
        Lockout(app)


def test_device_cookies_default_to_the_secret_key() -> None:
    with_secret = Flask(__name__)
    with_secret.config["SECRET_KEY"] = "s3cret"
    Lockout(with_secret)
    without = Flask(__name__)
    Lockout(without)
    assert with_secret.extensions["lockout"].device_cookies is True
    assert without.extensions["lockout"].device_cookies is False


def test_second_init_app_is_refused() -> None:
    app = Flask(__name__)
    Lockout(app)
    with pytest.raises(RuntimeError, match="already registered"):
        Lockout(app)


def test_one_extension_serves_several_apps() -> None:
    lockout = Lockout()
    strict, lax = Flask("strict"), Flask("lax")
    strict.config["LOCKOUT_MAX_FAILURES"] = 1
    lax.config["LOCKOUT_MAX_FAILURES"] = 9
    lockout.init_app(strict)
    lockout.init_app(lax)
    with strict.app_context():
        assert lockout.record_failure("login:email:a") == (True, 60)
    with lax.app_context():
        assert lockout.record_failure("login:email:a") == (False, 0)


def test_app_starts_while_redis_is_down() -> None:
    app = make_app({"LOCKOUT_STORAGE_URI": f"redis://127.0.0.1:{free_port()}/0"})
    assert app.extensions["lockout"].storage.prefix == "lockout"


def test_use_without_init_app_says_what_to_do() -> None:
    app = Flask(__name__)
    lockout = Lockout()
    with app.app_context(), pytest.raises(RuntimeError, match="init_app"):
        lockout.is_locked("login:email:a")


# -- lockout_on_failure -----------------------------------------------------------


def test_locks_after_max_failures_with_retry_after() -> None:
    client = make_app().test_client()
    assert [wrong(client).status_code for _ in range(3)] == [401, 401, 401]
    locked = client.post(
        "/login", data={"email": "alice@example.com", "password": "right"}
    )
    assert locked.status_code == 429
    assert locked.headers["Retry-After"] == "60"
    assert b"Try again in 1 minute." in locked.data
    assert locked.mimetype == "text/html"


def test_json_clients_get_json() -> None:
    client = make_app().test_client()
    for _ in range(3):
        assert api_wrong(client).status_code == 401
    refused = client.post("/api/login", json={"username": "U ", "password": "right"})
    assert refused.status_code == 429
    assert refused.json == {"error": refused.json["error"], "retry_after": 60}
    html_refused = wrong(client, headers={"Accept": "application/json"})
    assert html_refused.status_code == 401  # a different endpoint, not locked


def test_the_apps_own_429_handler_wins() -> None:
    app = make_app()

    @app.errorhandler(429)
    def slow_down(error: Exception) -> tuple[str, int]:
        return "please wait", 429

    client = app.test_client()
    for _ in range(3):
        wrong(client)
    assert wrong(client).data == b"please wait"


def test_a_generic_http_exception_handler_answers_our_429_too() -> None:
    app = make_app()

    @app.errorhandler(HTTPException)
    def as_json(error: HTTPException) -> tuple[Any, int]:
        return jsonify(code=error.code), error.code or 500

    client = app.test_client()
    for _ in range(3):
        wrong(client)
    refused = wrong(client)
    assert (refused.status_code, refused.json) == (429, {"code": 429})


def test_a_blueprints_429_handler_answers_its_own_views() -> None:
    app = Flask(__name__)
    app.config["LOCKOUT_MAX_FAILURES"] = 1
    app.config["LOCKOUT_IP_MAX_FAILURES"] = 1
    lockout = Lockout(app)
    api = Blueprint("api", __name__)

    @api.post("/login")
    @lockout.lockout_on_failure(by="ip")
    def login() -> tuple[str, int]:
        return "no", 401

    @api.errorhandler(429)
    def api_slow_down(error: Exception) -> tuple[Any, int]:
        return jsonify(error="slow down"), 429

    app.register_blueprint(api, url_prefix="/api")
    client = app.test_client()
    assert client.post("/api/login").status_code == 401
    refused = client.post("/api/login")
    assert (refused.status_code, refused.json) == (429, {"error": "slow down"})


def test_trapped_http_exceptions_reach_the_caller() -> None:
    app = make_app({"TRAP_HTTP_EXCEPTIONS": True})
    client = app.test_client()
    for _ in range(3):
        wrong(client)
    with pytest.raises(TooManyAttempts) as refused:
        wrong(client)
    assert refused.value.retry_after_seconds == 60


def test_the_refusal_is_the_apps_response_class() -> None:
    class AppResponse(Response):
        pass

    app = make_app()
    app.response_class = AppResponse
    seen: list[type] = []

    @app.after_request
    def record(response: Response) -> Response:
        seen.append(type(response))
        return response

    client = app.test_client()
    for _ in range(4):
        wrong(client)
    assert seen == [AppResponse] * 4


def test_a_locked_address_is_refused_before_the_form_is_read() -> None:
    # Stacked decorators: a flood from a locked address costs no form parsing,
    # so a request without the account field gets the 429, not a 400.
    app = Flask(__name__)
    app.config["LOCKOUT_MAX_FAILURES"] = 2
    app.config["LOCKOUT_IP_MAX_FAILURES"] = 2
    lockout = Lockout(app)

    @app.post("/login")
    @lockout.throttled("100/minute", by=("form:email", "ip"))
    @lockout.lockout_on_failure(by=("form:email", "ip"))
    def login() -> tuple[str, int]:
        return "no", 401

    client = app.test_client()
    for i in range(2):
        assert client.post("/login", data={"email": f"u{i}@e.com"}).status_code == 401
    assert client.post("/login", data={}).status_code == 429
    assert (
        client.post(
            "/login", data={}, environ_base={"REMOTE_ADDR": "10.0.0.9"}
        ).status_code
        == 400
    )


def test_account_values_are_normalised_into_one_bucket() -> None:
    app = make_app()
    client = app.test_client()
    for email in ("Alice@Example.com ", " alice@example.com", "ALICE@EXAMPLE.COM"):
        wrong(client, email, environ_base={"REMOTE_ADDR": f"198.51.100.{len(email)}"})
    assert wrong(client, "alice@example.com").status_code == 429


def test_missing_field_is_a_400_not_a_shared_bucket() -> None:
    client = make_app().test_client()
    assert client.post("/login", data={"password": "x"}).status_code == 400
    assert (
        client.post("/login", data={"email": "  ", "password": "x"}).status_code == 400
    )
    assert client.post("/api/login", data="not json").status_code == 400


def test_success_clears_account_keys_but_not_ip_keys() -> None:
    app = make_app()
    client = app.test_client()
    wrong(client, "alice@example.com")
    wrong(client, "carol@example.com")
    # The attacker signs in to their own account from the same address.
    assert (
        client.post(
            "/login", data={"email": "bob@example.com", "password": "bobs"}
        ).status_code
        == 200
    )
    assert wrong(client, "dave@example.com").status_code == 401  # third ip failure
    refused = client.post(
        "/login", data={"email": "bob@example.com", "password": "bobs"}
    )
    assert refused.status_code == 429


def test_success_clears_the_account() -> None:
    client = make_app().test_client()
    for _ in range(2):
        wrong(client, environ_base={"REMOTE_ADDR": "198.51.100.1"})
    ok = client.post(
        "/login",
        data={"email": "alice@example.com", "password": "right"},
        environ_base={"REMOTE_ADDR": "198.51.100.2"},
    )
    assert ok.status_code == 200
    for _ in range(2):
        assert (
            wrong(client, environ_base={"REMOTE_ADDR": "198.51.100.3"}).status_code
            == 401
        )


def test_a_view_exception_is_given_back_once_then_counts() -> None:
    app = make_app({"PROPAGATE_EXCEPTIONS": False})  # LOCKOUT_MAX_FAILURES=3
    client = app.test_client()
    statuses = [
        client.post("/boom", data={"email": "a@x"}).status_code for _ in "abcde"
    ]
    assert statuses == [500, 500, 500, 500, 429]
    with app.app_context():
        state = app.extensions["lockout"]
        assert state.extension.status("boom:email:a@x").lock_number == 1


def test_abort_401_counts_as_a_failure() -> None:
    client = make_app().test_client()
    for _ in range(3):
        assert api_wrong(client).status_code == 401
    assert (
        client.post(
            "/api/login", json={"username": "u", "password": "right"}
        ).status_code
        == 429
    )


def test_async_views() -> None:
    client = make_app().test_client()
    for _ in range(3):
        assert (
            client.post("/async", data={"email": "a@x", "password": "x"}).status_code
            == 401
        )
    assert (
        client.post("/async", data={"email": "a@x", "password": "right"}).status_code
        == 429
    )


def test_class_based_views() -> None:
    client = make_app().test_client()
    for _ in range(3):
        assert client.post("/otp/alice", data={"code": "0"}).status_code == 403
    assert client.post("/otp/alice", data={"code": "123456"}).status_code == 429
    assert client.post("/otp/bob", data={"code": "123456"}).status_code == 200


def test_disabled_means_no_enforcement() -> None:
    client = make_app({"LOCKOUT_ENABLED": False}).test_client()
    assert all(wrong(client).status_code == 401 for _ in range(10))
    assert all(client.get("/search").status_code == 200 for _ in range(10))


def test_hammering_a_locked_key_is_answered_in_process() -> None:
    class Counting(MemoryStorage):
        reserves = 0

        def lockout_reserve_all(self, *args: Any, **kwargs: Any) -> Any:
            Counting.reserves += 1
            return super().lockout_reserve_all(*args, **kwargs)

    client = make_app(storage=Counting()).test_client()
    for _ in range(3):
        wrong(client)
    before = Counting.reserves
    for _ in range(50):
        assert wrong(client).status_code == 429
    # The failure that locked the key told this process; no storage call since.
    assert Counting.reserves - before == 0

    uncached = make_app({"LOCKOUT_LOCAL_CACHE_SECONDS": 0}, storage=Counting())
    client = uncached.test_client()
    for _ in range(3):
        wrong(client)
    before = Counting.reserves
    for _ in range(50):
        assert wrong(client).status_code == 429
    assert Counting.reserves - before == 50


def test_manual_api_and_signals() -> None:
    app = make_app()
    lockout = app.extensions["lockout"].extension
    with (
        captured(failure_recorded, locked_out, lockout_reset) as seen,
        app.app_context(),
    ):
        assert lockout.record_failure("reset:email:a@x") == (False, 0)
        lockout.record_failure("reset:email:a@x")
        assert lockout.record_failure("reset:email:a@x") == (True, 60)
        assert lockout.is_locked("reset:email:a@x") == (True, 60)
        lockout.reset("reset:email:a@x")
        assert lockout.is_locked("reset:email:a@x") == (False, 0)
    names = [name for name, _ in seen]
    assert names == ["failure-recorded"] * 3 + ["locked-out", "lockout-reset"]
    assert seen[3][1]["key"] == "reset:email:a@x"
    assert seen[3][1]["key_type"] == "email"
    assert seen[3][1]["retry_after"] == 60


def test_reset_without_a_key_forgets_everything_in_this_process_too() -> None:
    app = make_app()
    client = app.test_client()
    for _ in range(3):
        wrong(client)
    assert wrong(client).status_code == 429  # now also cached in this process
    with app.app_context():
        app.extensions["lockout"].extension.reset()
    assert wrong(client).status_code == 401


def test_request_signals_carry_the_request() -> None:
    client = make_app().test_client()
    with captured(failure_recorded, locked_out) as seen:
        for _ in range(4):
            wrong(client, environ_base={"REMOTE_ADDR": "203.0.113.7"})
    keys = {(name, data["key"]) for name, data in seen}
    assert ("locked-out", "login:email:alice@example.com") in keys
    assert ("locked-out", "login:ip:203.0.113.7") in keys
    assert all(data["endpoint"] == "login" for _, data in seen)
    assert all(data["client_ip"] == "203.0.113.7" for _, data in seen)


# -- throttled -----------------------------------------------------------------------


def test_throttled_limits_with_headers() -> None:
    client = make_app().test_client()
    first = client.get("/search")
    assert first.headers["RateLimit-Limit"] == "2"
    assert first.headers["RateLimit-Remaining"] == "1"
    assert int(first.headers["RateLimit-Reset"]) > 0
    assert client.get("/search").headers["RateLimit-Remaining"] == "0"
    refused = client.get("/search")
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["RateLimit-Remaining"] == "0"


def test_throttled_every_key_must_pass() -> None:
    client = make_app().test_client()
    for i in range(2):
        ok = client.post(
            "/reset-password",
            data={"email": "a@x"},
            environ_base={"REMOTE_ADDR": f"198.51.100.{i}"},
        )
        assert ok.status_code == 200
    # A fresh address, but the account has used its two.
    refused = client.post(
        "/reset-password",
        data={"email": "A@X"},
        environ_base={"REMOTE_ADDR": "198.51.100.99"},
    )
    assert refused.status_code == 429


def test_headers_can_be_turned_off() -> None:
    client = make_app({"LOCKOUT_HEADERS_ENABLED": False}).test_client()
    assert "RateLimit-Limit" not in client.get("/search").headers


def test_default_limits_and_exemptions() -> None:
    client = make_app({"LOCKOUT_DEFAULT_LIMITS": "1/minute"}).test_client()
    assert client.get("/default").status_code == 200
    assert client.get("/default").status_code == 429
    assert client.get("/exempt").status_code == 200
    assert client.get("/exempt").status_code == 429
    assert client.get("/exempt?vip=1").status_code == 200


def test_rate_limited_signal() -> None:
    client = make_app().test_client()
    with captured(rate_limited) as seen:
        for _ in range(3):
            client.get("/search", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    [(name, data)] = seen
    assert data["key"] == "search:ip:203.0.113.9"
    assert data["limit"] == 2


def test_rate_limited_signal_names_the_refusing_key() -> None:
    client = make_app().test_client()
    for i in range(2):
        client.post(
            "/reset-password",
            data={"email": "a@x"},
            environ_base={"REMOTE_ADDR": f"198.51.100.{i}"},
        )
    with captured(rate_limited) as seen:
        refused = client.post(
            "/reset-password",
            data={"email": "a@x"},
            environ_base={"REMOTE_ADDR": "198.51.100.9"},
        )
    assert refused.status_code == 429
    assert [data["key"] for _, data in seen] == ["reset_password:email:a@x"]
    # The fresh address was not charged for the refused request.
    for _ in range(2):
        ok = client.post(
            "/reset-password",
            data={"email": "b@x"},
            environ_base={"REMOTE_ADDR": "198.51.100.9"},
        )
        assert ok.status_code == 200


@pytest.mark.parametrize("bad", ["lots", "5/fortnight", ""])
def test_bad_limit_fails_at_decoration_time(bad: str) -> None:
    with pytest.raises(ValueError):
        Lockout().throttled(bad)


@pytest.mark.parametrize("bad", ["form:", "cookie:x", "ip:", 42, ()])
def test_bad_key_spec_fails_at_decoration_time(bad: Any) -> None:
    with pytest.raises(ValueError):
        Lockout().lockout_on_failure(by=bad)


def test_an_unhashable_callable_spec_fails_at_decoration_time() -> None:
    """A callable the read cache cannot key on is refused when the view is
    decorated, not with a 500 on every request."""

    class Account:
        __hash__ = None  # type: ignore[assignment]

        def __call__(self) -> str:
            return "alice"

    with pytest.raises(TypeError):
        Lockout().lockout_on_failure(by=Account())


# -- storage outages ------------------------------------------------------------------


def dead_redis_app(mode: str) -> Flask:
    return make_app(
        {
            "LOCKOUT_STORAGE_URI": f"redis://127.0.0.1:{free_port()}/0",
            "LOCKOUT_FAIL_MODE": mode,
        }
    )


def test_outage_fails_open_without_a_5xx() -> None:
    app = dead_redis_app("open")
    client = app.test_client()
    with captured(storage_error) as seen:
        statuses = [wrong(client).status_code for _ in range(5)]
        statuses += [client.get("/search").status_code for _ in range(5)]
    assert statuses == [401] * 5 + [200] * 5
    # One signal for the outage, not one per request.
    assert [name for name, _ in seen] == ["storage-error"]
    with app.app_context():
        assert app.extensions["lockout"].extension.is_locked("login:email:a") == (
            False,
            0,
        )


def test_outage_fails_closed_with_503() -> None:
    client = dead_redis_app("closed").test_client()
    for response in (wrong(client), client.get("/search")):
        assert response.status_code == 503
        assert int(response.headers["Retry-After"]) >= 1
    assert (
        client.get("/search", headers={"Accept": "application/json"}).json[
            "retry_after"
        ]
        >= 1
    )


def test_storage_handed_in_as_a_store() -> None:
    store: Storage = MemoryStorage()
    app = make_app(storage=store)
    assert app.extensions["lockout"].storage is store


def run_cli(app: Flask, *args: str, input: str | None = None) -> Any:
    return app.test_cli_runner().invoke(args=["lockout", *args], input=input)


def test_cli_on_memory_storage_says_it_cannot_see_the_server() -> None:
    app = make_app()
    for args in (("status", "login:email:a@x"), ("list",), ("reset", "a:b:c")):
        result = run_cli(app, *args)
        assert result.exit_code == 1
        assert "memory://" in result.output and "cannot see" in result.output
    assert run_cli(app, "status", "alice").exit_code == 2  # bad usage first


def test_cli_status_list_reset() -> None:
    import fakeredis

    app = make_app(storage=fakeredis.FakeRedis())
    client = app.test_client()
    for _ in range(3):
        wrong(client, environ_base={"REMOTE_ADDR": "203.0.113.7"})
    status = run_cli(app, "status", "login:email:Alice@Example.com")
    assert status.exit_code == 0
    assert "locked, retry after 60 s" in status.output
    listed = run_cli(app, "list")
    assert "login:email:alice@example.com" in listed.output
    assert "login:ip:203.0.113.7" in listed.output
    assert run_cli(app, "reset", "login:email:alice@example.com").exit_code == 0
    assert (
        "not locked" in run_cli(app, "status", "login:email:alice@example.com").output
    )
    assert run_cli(app, "reset", "--all", input="n\n").exit_code == 1
    assert "login:ip" in run_cli(app, "list").output
    assert run_cli(app, "reset", "--all", input="y\n").exit_code == 0
    assert "No key is failing or locked." in run_cli(app, "list").output


@pytest.mark.parametrize(
    "args",
    [
        ("status", "alice"),
        ("status",),
        ("reset",),
        ("reset", "a:b:c", "--all"),
        ("status", "login::x"),
    ],
)
def test_cli_bad_usage_exits_2(args: tuple[str, ...]) -> None:
    result = run_cli(make_app(), *args)
    assert result.exit_code == 2, result.output


def test_cli_policy_simulates_the_engine() -> None:
    app = make_app(
        {
            "LOCKOUT_MAX_FAILURES": 5,
            "LOCKOUT_IP_MAX_FAILURES": 5,
            "LOCKOUT_DEFAULT_LIMITS": "10/minute",
        }
    )
    output = run_cli(app, "policy").output
    assert "lock 1: 60 s" in output and "lock 2: 120 s" in output
    assert "lock 6: 1920 s" in output and "lock 7 and later: 3600 s" in output
    # Five guesses at 0 s, then one as each lock ends: 60, 180, 420, 900 and
    # 1860 s; the sixth lock runs to 3780 s, past the hour.
    assert "each account, guessing again as each lock ends: 10 per hour" in output
    # Paced under the limit, an account still gets no more than a day's 4.
    assert (
        "each account, staying under the limit (4 per 86400 s): 4 per hour,"
        " 4 per day" in output
    )
    assert (
        "each ip, staying under the limit (4 per 900 s): 16 per hour, 384 per day"
        in output
    )
    assert "on average at most 600 per hour" in output


def test_stacked_decorators_read_a_callable_key_once_per_request() -> None:
    app = Flask(__name__)
    lockout = Lockout(app)
    calls: list[str] = []

    def account() -> str:
        calls.append(request.path)
        return request.form["email"]

    @app.post("/login")
    @lockout.throttled("100/minute", by=("ip", account))
    @lockout.lockout_on_failure(by=("ip", account))
    def login() -> tuple[str, int]:
        return "no", 401

    client = app.test_client()
    assert client.post("/login", data={"email": "a@x"}).status_code == 401
    assert client.post("/login", data={"email": "b@x"}).status_code == 401
    assert calls == ["/login", "/login"]


def test_sub_requests_in_one_app_context_each_count_their_own_keys() -> None:
    # A batch endpoint dispatching sub-requests in-process shares one app
    # context, so one g, among them: nothing of one may count for another.
    app = Flask(__name__)
    app.config.update(
        LOCKOUT_MAX_FAILURES=5, LOCKOUT_IP_MAX_FAILURES=5, LOCKOUT_DEVICE_COOKIES=False
    )
    lockout = Lockout(app)
    checked: list[str] = []

    @app.post("/login")
    @lockout.lockout_on_failure(by="form:email", scope="login")
    def login() -> tuple[str, int]:
        checked.append(request.form["email"])
        form = request.form
        if (form["email"], form["password"]) == ("mallory@x", "mine"):
            lockout.succeeded()  # the attacker's own account
            return "ok", 200
        return "wrong", 401

    @app.post("/batch")
    def batch() -> Any:
        answers = []
        for item in request.get_json():
            with app.test_request_context("/login", method="POST", data=item):
                answers.append(app.full_dispatch_request().status_code)
        return jsonify(answers)

    own = {"email": "mallory@x", "password": "mine"}
    rounds = [own] + [{"email": "alice@x", "password": f"guess{i}"} for i in range(4)]
    answers = app.test_client().post("/batch", json=rounds * 25).json
    assert checked.count("alice@x") == 5
    assert answers.count(429) == 95
    with app.app_context():  # as test suites often wrap their clients
        client = app.test_client()
        client.post("/login", data={"email": "bob@x", "password": "x"})
        client.post("/login", data={"email": "carol@x", "password": "x"})
        assert lockout.status("login:email:bob@x").failures == 1
        assert lockout.status("login:email:carol@x").failures == 1


def test_decorators_outside_the_guard_still_see_the_refusal() -> None:
    app = make_app()
    seen: list[int] = []
    handled: list[int] = []

    def audit(view: Any) -> Any:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return view(*args, **kwargs)
            except HTTPException as refusal:
                seen.append(refusal.code or 0)
                raise

        return wrapper

    @app.post("/audited")
    @audit
    @app.extensions["lockout"].extension.lockout_on_failure(by="ip")
    def audited() -> tuple[str, int]:
        return "no", 401

    @app.errorhandler(429)
    def log_and_reraise(error: HTTPException) -> Any:
        handled.append(429)
        raise error

    app.testing = False  # a re-raised error is a 500, not the test's exception
    client = app.test_client()
    for _ in range(3):
        assert client.post("/audited").status_code == 401
    assert client.post("/audited").status_code == 500  # the handler re-raised
    assert seen == [429] and handled == [429]


def test_an_apps_own_too_many_attempts_handler_survives_init_app() -> None:
    from flask_lockout import TooManyAttempts as Refusal

    app = Flask(__name__)
    app.config["LOCKOUT_MAX_FAILURES"] = 1
    app.config["LOCKOUT_IP_MAX_FAILURES"] = 1

    @app.errorhandler(Refusal)
    def mine(error: Refusal) -> tuple[str, int]:
        return "mine", 429

    lockout = Lockout(app)  # after the app's own handler

    @app.post("/login")
    @lockout.lockout_on_failure(by="ip")
    def login() -> tuple[str, int]:
        return "no", 401

    client = app.test_client()
    assert client.post("/login").status_code == 401
    assert client.post("/login").data == b"mine"
