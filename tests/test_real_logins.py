"""Login views written the ways Flask apps really answer a wrong password,
attacked over real HTTP with a wordlist, as an off-the-shelf brute-force
tool (THC-Hydra) would: a fresh connection and no cookies per guess."""

from __future__ import annotations

import http.client
import threading
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest
from flask import (
    Flask,
    flash,
    jsonify,
    redirect,
    render_template_string,
    request,
    url_for,
)
from flask_login import LoginManager, UserMixin, login_user

from flask_lockout import Lockout, MemoryStorage
from flask_lockout.policy import DEFAULT_RESERVATION_SECONDS

from .conftest import FakeClock, run_in_threads
from .test_http import serving

PASSWORD = "hunter2-but-longer"
#: The real password is the 150th of 200 guesses, as in a leaked-list attack.
WORDLIST = (
    [f"guess-{i}" for i in range(149)]
    + [PASSWORD]
    + [f"guess-{i}" for i in range(149, 199)]
)
FORM = """<form method="post">{% if error %}<p>{{ error }}</p>{% endif %}
<input name="email"><input name="password" type="password"></form>"""


class InvalidLogin(Exception):
    pass


class User(UserMixin):
    def __init__(self, email: str) -> None:
        self.id = email


def build(style: str, config: dict[str, Any]) -> Flask:
    """An app whose /login answers a wrong password in ``style``."""
    app = Flask(__name__)
    app.config.update({"SECRET_KEY": "test secret", **config})
    lockout = Lockout(app)
    app.extensions["checks"] = checks = {"n": 0, "found": False}
    guard = lockout.lockout_on_failure(by=("ip", "form:email"))

    def verify() -> bool:
        checks["n"] += 1
        ok = request.form.get("password") == PASSWORD
        checks["found"] = checks["found"] or ok
        return ok

    @app.get("/login")
    def form() -> str:
        return render_template_string(FORM, error=None)

    if style == "403":

        @app.post("/login")
        @guard
        def login_403() -> tuple[str, int]:
            if verify():
                lockout.succeeded()
                return "welcome", 200
            return "wrong email or password", 403

    elif style == "rerender":

        @app.post("/login")
        @guard
        def login_rerender() -> str:
            if verify():
                lockout.succeeded()
                return "welcome"
            return render_template_string(FORM, error="Wrong email or password.")

    elif style == "redirect":

        @app.post("/login")
        @guard
        def login_redirect() -> Any:
            if verify():
                lockout.succeeded()
                return redirect("/home")
            flash("Wrong email or password.")
            return redirect(url_for("form"))

    elif style == "errorhandler":

        @app.errorhandler(InvalidLogin)
        def invalid(_error: InvalidLogin) -> tuple[str, int]:
            return "wrong email or password", 401

        @app.post("/login")
        @guard
        def login_raises() -> str:
            if not verify():
                raise InvalidLogin()
            lockout.succeeded()
            return "welcome"

    elif style == "flask_login":
        manager = LoginManager(app)
        manager.user_loader(User)

        @app.post("/login")
        @guard
        def login_flask_login() -> Any:
            if verify():
                login_user(User(request.form["email"]))  # declares the success
                return redirect("/home")
            return render_template_string(FORM, error="Wrong email or password.")

    elif style == "raises":  # argon2's verify() raises on a mismatch

        @app.post("/login")
        @guard
        def login_raises_uncaught() -> str:
            if not verify():
                raise ValueError("password does not match")
            lockout.succeeded()
            return "welcome"

    elif style == "json_token":

        @app.post("/login")
        @guard
        def login_json() -> Any:
            if verify():
                lockout.succeeded()
                return jsonify(token="t0ken")
            return jsonify(error="invalid credentials"), 401

    return app


STYLES = ["403", "rerender", "redirect", "errorhandler", "flask_login", "json_token"]


def guess(port: int, password: str, email: str = "alice@example.com") -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        body = urllib.parse.urlencode({"email": email, "password": password})
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        connection.request("POST", "/login", body, headers)
        return connection.getresponse().status
    finally:
        connection.close()


def attack(app: Flask, threads: int = 1) -> dict[str, Any]:
    words = iter(WORDLIST)
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                password = next(words, None)
            if password is None:
                return
            guess(port, password)

    with serving(app) as port:
        run_in_threads(work, threads)
    return dict(app.extensions["checks"])


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("threads", [1, 16])
def test_a_wordlist_attack_reaches_the_check_only_as_the_policy_allows(
    style: str, threads: int
) -> None:
    found = attack(build(style, {}), threads)
    assert found == {"n": 5, "found": False}


@pytest.mark.parametrize(
    "storage", ["memory", pytest.param("redis", marks=pytest.mark.redis)]
)
def test_a_check_that_raises_on_a_mismatch_gets_one_more_guess(
    storage: str, request: pytest.FixtureRequest
) -> None:
    config = {}
    if storage == "redis":
        config = {
            "LOCKOUT_STORAGE_URI": request.getfixturevalue("redis_server"),
            "LOCKOUT_KEY_PREFIX": request.getfixturevalue("redis_prefix"),
        }
    app = build("raises", config)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    found = attack(app, threads=1)
    assert found == {"n": 6, "found": False}  # was 200 of 200


@pytest.mark.redis
@pytest.mark.parametrize("style", ["rerender", "redirect", "flask_login"])
def test_the_same_attack_on_redis(
    style: str, redis_server: str, redis_prefix: str
) -> None:
    config = {"LOCKOUT_STORAGE_URI": redis_server, "LOCKOUT_KEY_PREFIX": redis_prefix}
    found = attack(build(style, config), threads=16)
    assert found == {"n": 5, "found": False}


@pytest.mark.parametrize("style", STYLES)
def test_the_owner_still_signs_in_and_is_forgiven(style: str) -> None:
    app = build(style, {"LOCKOUT_DEVICE_COOKIES": False, "LOCKOUT_IP_MAX_FAILURES": 5})
    client = app.test_client()
    wrong = {"email": "alice@example.com", "password": "typo"}
    right = {"email": "alice@example.com", "password": PASSWORD}
    for _ in range(4):
        assert client.post("/login", data=wrong).status_code != 429
    assert client.post("/login", data=right).status_code in (200, 302)
    # The account's own four typos are forgiven; the address keeps them, so
    # the owner gets one more typo before the address locks.
    assert client.post("/login", data=wrong).status_code != 429
    assert client.post("/login", data=right).status_code == 429


def test_an_undeclared_success_is_named_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = Flask(__name__)
    lockout = Lockout(app)

    @app.post("/login")
    @lockout.lockout_on_failure(by="form:email")
    def login() -> str:
        return "welcome"  # never declares the success

    client = app.test_client()
    with caplog.at_level("WARNING", logger="flask_lockout"):
        for n in range(25):
            client.post("/login", data={"email": f"user{n}@x"})
    warnings = [r.message for r in caplog.records if "FAILURE" in r.message]
    assert len(warnings) == 1
    assert "lockout.succeeded()" in warnings[0] and "login" in warnings[0]


def test_a_first_wrong_password_answered_with_the_form_warns_of_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A correct app whose worker's first requests were wrong passwords
    # answered with the form again (200), before anyone logged in.
    app = Flask(__name__)
    lockout = Lockout(app)

    @app.post("/login")
    @lockout.lockout_on_failure(by="form:email")
    def login() -> str:
        if request.form.get("password") == "right":
            lockout.succeeded()
            return "welcome"
        return "<form>Wrong email or password.</form>"

    client = app.test_client()
    with caplog.at_level("WARNING", logger="flask_lockout"):
        for n in range(5):
            client.post("/login", data={"email": f"user{n}@x", "password": "?"})
        client.post("/login", data={"email": "ok@x", "password": "right"})
        for n in range(30):
            client.post("/login", data={"email": f"late{n}@x", "password": "?"})
    assert not [r for r in caplog.records if "FAILURE" in r.message]


def outcomes_app(view: Callable[[Lockout], Any]) -> Flask:
    app = Flask(__name__)
    app.config["LOCKOUT_MAX_FAILURES"] = 2
    app.config["LOCKOUT_IP_MAX_FAILURES"] = 2
    lockout = Lockout(app)
    app.post("/login")(lockout.lockout_on_failure(by="form:email")(view(lockout)))
    return app


def test_a_5xx_is_given_back_once_then_counts_and_a_declared_failure_wins() -> None:
    def crashing(_lockout: Lockout) -> Any:
        def view() -> str:
            raise RuntimeError("the database went away")

        return view

    client = outcomes_app(crashing).test_client()
    client.application.config["PROPAGATE_EXCEPTIONS"] = False
    statuses = [
        client.post("/login", data={"email": "a@x"}).status_code for _ in "abcdef"
    ]
    # One no-verdict give-back per key and window; after it a 5xx counts, or a
    # check that raises on a mismatch would give unlimited guesses.
    assert statuses == [500, 500, 500, 429, 429, 429]

    def failing_then_crashing(lockout: Lockout) -> Any:
        def view() -> str:
            lockout.failed()
            raise RuntimeError("after the password check")

        return view

    client = outcomes_app(failing_then_crashing).test_client()
    client.application.config["PROPAGATE_EXCEPTIONS"] = False
    statuses = [client.post("/login", data={"email": "a@x"}).status_code for _ in "abc"]
    assert statuses == [500, 500, 429]


def test_a_missing_field_is_a_400_and_counts_nothing() -> None:
    client = outcomes_app(lambda _l: lambda: ("no", 401)).test_client()
    for _ in range(5):
        missing = client.post("/login", json={"password": "x"})
        assert missing.status_code == 400 and "error" in missing.json
    # A name of invisible characters only folds to nothing: no shared bucket.
    for invisible in ("\u200b", "\u0301\u0301", "\t", "\u200b" * 2000):
        assert client.post("/login", data={"email": invisible}).status_code == 400
    assert client.post("/login", data={"email": "a@x"}).status_code == 401


def test_views_slower_than_the_reservation_let_no_new_wave_in(
    clock: FakeClock,
) -> None:
    """An LDAP check that takes minutes: whatever the view's duration, no
    more checks than the policy (it was 15 against 5 when reservations
    expired under slow views)."""
    app = Flask(__name__)
    lockout = Lockout(app, storage=MemoryStorage(clock=clock))
    release = threading.Event()
    checks = [0]
    started = threading.Semaphore(0)

    @app.post("/login")
    @lockout.lockout_on_failure(by="form:email")
    def login() -> tuple[str, int]:
        checks[0] += 1
        started.release()
        release.wait(10)  # the slow directory server
        return "no", 401

    statuses: list[int] = []

    def one() -> None:
        client = app.test_client()
        statuses.append(client.post("/login", data={"email": "a@x"}).status_code)

    def wave() -> list[threading.Thread]:
        threads = [threading.Thread(target=one) for _ in range(5)]
        for thread in threads:
            thread.start()
        return threads

    first = wave()
    for _ in range(5):  # all five are inside the slow view
        assert started.acquire(timeout=10)
    later = []
    for _ in range(2):  # two more waves, each after the reservations expired
        clock.advance(DEFAULT_RESERVATION_SECONDS + 1)
        threads = wave()
        for thread in threads:
            thread.join(10)  # refused at once; a granted one would block here
        later += threads
    release.set()
    for thread in first:
        thread.join(10)
    assert checks[0] == 5
    assert sorted(statuses) == [401] * 5 + [429] * 10


def test_an_early_success_followed_by_an_error_is_a_failure() -> None:
    """Password right, one-time code wrong: the final answer wins."""

    def two_factors(lockout: Lockout) -> Any:
        def view() -> tuple[str, int]:
            lockout.succeeded()  # the password matched ...
            if request.form.get("code") != "123456":
                return "wrong code", 401  # ... but the second factor did not
            return "welcome", 200

        return view

    client = outcomes_app(two_factors).test_client()
    codes = [
        client.post("/login", data={"email": "a@x", "code": str(i)}).status_code
        for i in range(4)
    ]
    assert codes == [401, 401, 429, 429]


def test_a_5xx_never_undoes_the_lock_it_set(clock: FakeClock) -> None:
    app = Flask(__name__)
    app.config.update(
        LOCKOUT_MAX_FAILURES=2,
        LOCKOUT_IP_MAX_FAILURES=2,
        LOCKOUT_LOCAL_CACHE_SECONDS=0,  # the refusal cache keeps real time
        PROPAGATE_EXCEPTIONS=False,
    )
    lockout = Lockout(app, storage=MemoryStorage(clock=clock))

    @app.post("/login")
    @lockout.lockout_on_failure(by="form:email")
    def login() -> str:
        raise ValueError("password does not match")  # argon2's verify()

    client = app.test_client()

    def post() -> int:
        return client.post("/login", data={"email": "a@x"}).status_code

    assert [post(), post(), post(), post()] == [500, 500, 500, 429]
    checks = 3
    for _ in range(6):  # lock after lock: each ends, one more guess locks again
        clock.advance(3600)
        statuses = [post(), post()]
        assert statuses == [500, 429]
        checks += 1
    assert checks == 9  # one per lock, the give-back never opens a lock


def padding_app() -> Flask:
    """A view that looks the account up as the example app does (stripped,
    case-folded), ignoring zero-width characters as some collations do, and
    reads the field wherever it comes (request.values)."""
    app = Flask(__name__)
    lockout = Lockout(app)
    app.extensions["checks"] = checks = {"n": 0, "found": False}

    @app.post("/login")
    @lockout.lockout_on_failure(by=("ip", "form:email"))
    def login() -> tuple[str, int]:
        account = request.values["email"].replace("\u200b", "").strip().casefold()
        if account != "alice@example.com":
            return "no such account", 401
        checks["n"] += 1
        if request.values["password"] == PASSWORD:
            checks["found"] = True
            lockout.succeeded()
            return "welcome", 200
        return "wrong email or password", 401

    return app


def spread_guess(port: int, number: int, email: str, password: str, query: str) -> int:
    """One guess from its own loopback address (five per address), so that
    only the account's key can stop the attack."""
    source = ("127.0.1." + str(number // 5 + 1), 0)
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=10, source_address=source
    )
    try:
        body = urllib.parse.urlencode({"email": email, "password": password})
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        connection.request("POST", "/login" + query, body, headers)
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.mark.parametrize(
    "pad",
    [
        # Longer than any account name: refused before the view.
        lambda i: "alice@example.com" + " " * (1100 + i),
        # Padding the app strips off, or case it folds: the same bucket.
        lambda i: " " * i + "Alice@Example.com",
        # On both sides of the length refused.
        lambda i: "alice@example.com" + "\u200b" * (6 * i),
    ],
    ids=["long-spaces", "short-spaces", "zero-width"],
)
def test_padding_the_app_strips_off_opens_no_fresh_bucket(
    pad: Callable[[int], str],
) -> None:
    app = padding_app()
    with serving(app) as port:
        statuses = [
            spread_guess(port, i, pad(i), password, "")
            for i, password in enumerate(WORDLIST)
        ]
    checks = app.extensions["checks"]
    assert checks["n"] <= 5 and not checks["found"]  # was 200 checks, found
    assert statuses.count(401) <= 5


def test_a_field_given_twice_counts_on_every_copy() -> None:
    """The key reads the body; a view reading request.values takes the query
    string first. The attempt counts on both copies, so the one the view
    checks is never a fresh bucket (the body's alone: 40 checks of 5)."""
    app = padding_app()
    with serving(app) as port:
        statuses = [
            spread_guess(
                port, i, f"fresh{i}@example.com", password, "?email=alice@example.com"
            )
            for i, password in enumerate(WORDLIST)
        ]
    assert app.extensions["checks"] == {"n": 5, "found": False}
    assert statuses.count(401) == 5 and statuses.count(429) == 195


def test_real_users_giving_a_field_twice_are_not_refused() -> None:
    app = padding_app()
    client = app.test_client()
    right = PASSWORD
    # A hidden copy sent empty (a page with a desktop and a mobile field),
    # the same account in other case, and a typo in the link's query string
    # corrected in the form: all answered by the view.
    assert (
        client.post(
            "/login",
            data={"email": ["alice@example.com", ""], "password": right},
        ).status_code
        == 200
    )
    assert (
        client.post(
            "/login?email=Alice@Example.com",
            data={"email": "alice@example.com", "password": right},
        ).status_code
        == 200
    )
    assert (
        client.post(
            "/login?email=alice@exmaple.com",
            data={"email": "alice@example.com", "password": "typo"},
        ).status_code
        == 401
    )
    # A third different copy is refused: each copy is a failure on one more
    # account, so copies would lock accounts out wholesale.
    many = {"email": [f"u{i}@example.com" for i in range(3)], "password": right}
    assert client.post("/login", data=many).status_code == 400


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "Application/JSON",
        "application/merge-patch+json; charset=utf-8",
    ],
)
def test_a_json_body_and_a_query_string_count_together(content_type: str) -> None:
    """A view that reads the JSON body, guarded by a form: spec, sent the
    account in JSON of any JSON type and a throwaway name in the query
    string: the attempt counts on both (it counted on the throwaway only:
    12 checks of 5)."""
    app = Flask(__name__)
    lockout = Lockout(app)
    checks = [0]

    @app.post("/login")
    @lockout.lockout_on_failure(by="form:email")
    def login() -> tuple[str, int]:
        body = request.get_json(silent=True) or {}
        if body.get("email") == "alice@example.com":
            checks[0] += 1
        return "no", 401

    client = app.test_client()
    statuses = [
        client.post(
            f"/login?email=fresh{i}@example.com",
            data='{"email": "alice@example.com", "password": "guess"}',
            content_type=content_type,
        ).status_code
        for i in range(12)
    ]
    assert checks[0] == 5 and statuses == [401] * 5 + [429] * 7


def test_a_long_header_value_is_a_key_not_a_refusal() -> None:
    app = Flask(__name__)
    lockout = Lockout(app)

    @app.post("/api")
    @lockout.lockout_on_failure(by=("ip", "header:Authorization"))
    def api() -> tuple[str, int]:
        return "no", 401

    token = "Bearer " + "a" * 1100  # a JWT is often longer than 1024
    client = app.test_client()
    statuses = [
        client.post("/api", headers={"Authorization": token}).status_code
        for _ in range(6)
    ]
    assert statuses == [401] * 5 + [429]


def test_a_success_naming_two_accounts_forgives_neither() -> None:
    """The attacker guesses at alice, then signs into his own account (in the
    query string, which the view reads first) with alice named in the body:
    the success must not forgive alice."""
    app = Flask(__name__)
    app.config["LOCKOUT_DEVICE_COOKIES"] = False
    lockout = Lockout(app)
    passwords = {"alice@example.com": PASSWORD, "mallory@example.com": "mine"}

    @app.post("/login")
    @lockout.lockout_on_failure(by="form:email")
    def login() -> tuple[str, int]:
        if passwords.get(request.values["email"]) == request.values["password"]:
            lockout.succeeded()
            return "welcome", 200
        return "no", 401

    client = app.test_client()
    alice = {"email": "alice@example.com", "password": "guess"}
    for _ in range(4):
        assert client.post("/login", data=alice).status_code == 401
    own = "/login?email=mallory@example.com&password=mine"
    assert client.post(own, data={"email": "alice@example.com"}).status_code == 200
    # Alice's four failures stand: one more guess locks her.
    assert client.post("/login", data=alice).status_code == 401
    assert client.post("/login", data=alice).status_code == 429
