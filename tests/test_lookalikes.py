"""Look-alike accounts: an attacker who owns ``Alice`` or ``ａｌｉｃｅ`` next to
``alice`` gets no more guesses at ``alice`` than anyone else, whether the
app's user lookup is exact, case-insensitive or accent-insensitive."""

from __future__ import annotations

import itertools
import unicodedata
from collections.abc import Callable

import pytest
from flask import Flask, request

from flask_lockout import Lockout, MemoryStorage
from flask_lockout.keys import fold

from .conftest import FakeClock

VICTIM = "alice"
LOOKALIKES = ["Alice", "ａｌｉｃｅ", "alice\u200b", "alicé", "ALICE", "al\u00adice"]


def exact(name: str) -> str:
    return name


def case_insensitive(name: str) -> str:
    return name.casefold()


def accent_insensitive(name: str) -> str:
    # Like a database collation that ignores case and accents.
    decomposed = unicodedata.normalize("NFKD", name.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


LOOKUPS: dict[str, Callable[[str], str]] = {
    "exact": exact,
    "case-insensitive": case_insensitive,
    "accent-insensitive": accent_insensitive,
}


def user_app(lookup: Callable[[str], str], devices: bool) -> Flask:
    """A user table holding alice and every look-alike the lookup keeps apart,
    each owned by the attacker."""
    users: dict[str, str] = {lookup(VICTIM): "victim's secret"}
    for name in LOOKALIKES:
        users.setdefault(lookup(name), "attacker's own")
    app = Flask(__name__)
    app.config.update(SECRET_KEY="s3cret", LOCKOUT_DEVICE_COOKIES=devices)
    lockout = Lockout(app)
    app.extensions["victim_checks"] = checks = [0]
    app.extensions["owned"] = [n for n in LOOKALIKES if lookup(n) != lookup(VICTIM)]

    @app.post("/login")
    @lockout.lockout_on_failure(by=("ip", "form:username"))
    def login() -> tuple[str, int]:
        key = lookup(request.form["username"])
        if key == lookup(VICTIM):
            checks[0] += 1
        if users.get(key) == request.form["password"]:
            lockout.succeeded()
            return "welcome", 200
        return "no", 401

    return app


@pytest.mark.parametrize("devices", [False, True], ids=["plain", "device-cookies"])
@pytest.mark.parametrize("lookup", LOOKUPS)
def test_logging_into_a_lookalike_forgives_nothing_at_alice(
    lookup: str, devices: bool
) -> None:
    app = user_app(LOOKUPS[lookup], devices)
    owned = app.extensions["owned"]
    if not owned:
        pytest.skip("this lookup leaves no look-alike to own")
    rounds = 0
    # A fresh address per round: only the account's own bucket stands.
    for rounds, own in enumerate(itertools.islice(itertools.cycle(owned), 100)):
        client = app.test_client()
        addr = {"REMOTE_ADDR": f"198.51.100.{rounds % 250}"}
        for i in range(4):
            client.post(
                "/login",
                data={"username": VICTIM, "password": f"guess{rounds}-{i}"},
                environ_base=addr,
            )
        signed_in = client.post(
            "/login",
            data={"username": own, "password": "attacker's own"},
            environ_base=addr,
        )
        # The login into his own account works, and forgives only itself.
        assert signed_in.status_code in (200, 429)
    assert rounds == 99
    assert app.extensions["victim_checks"][0] <= 5  # was 400 of 400


def spellings_of(name: str, count: int) -> list[str]:
    """``count`` spellings an accent-insensitive lookup reads as ``name``."""
    marks = ["", "\u0301", "\u0300", "\u0302", "\u0308"]
    letters = [[c + m for m in marks] + [c.upper()] for c in name]
    return ["".join(p) for p in itertools.islice(itertools.product(*letters), count)]


def test_a_lookup_that_folds_more_gains_nothing_from_spellings() -> None:
    app = user_app(accent_insensitive, devices=False)
    client = app.test_client()
    spellings = spellings_of(VICTIM, 100)
    assert len(set(spellings)) == 100
    assert {fold(s) for s in spellings} == {VICTIM}
    for i, spelling in enumerate(spellings):
        client.post(
            "/login",
            data={"username": spelling, "password": f"guess{i}"},
            environ_base={"REMOTE_ADDR": f"203.0.113.{i % 250}"},
        )
    assert app.extensions["victim_checks"][0] == 5  # was 100 spellings x 4


def test_the_owner_is_still_forgiven_for_her_own_typos() -> None:
    app = user_app(case_insensitive, devices=False)
    client = app.test_client()
    for _ in range(4):
        client.post("/login", data={"username": VICTIM, "password": "typo"})
    ok = client.post("/login", data={"username": VICTIM, "password": "victim's secret"})
    assert ok.status_code == 200
    other = app.test_client()
    addr = {"REMOTE_ADDR": "192.0.2.77"}
    # Her account is clean again: four more typos from elsewhere, no lock.
    for _ in range(4):
        assert (
            other.post(
                "/login",
                data={"username": VICTIM, "password": "typo"},
                environ_base=addr,
            ).status_code
            == 401
        )


def two_tables_app() -> Flask:
    """Customers sign up freely at /login; staff sign in at /admin/login;
    tenants keep separate user tables behind one endpoint."""
    app = Flask(__name__)
    app.config["SECRET_KEY"] = "s3cret"
    lockout = Lockout(app)
    customers = {"admin@corp.example": "attacker's own"}
    staff = {"admin@corp.example": "staff secret"}
    tenants = {"a": {"alice@x": "attacker's own"}, "b": {"alice@x": "victim's"}}
    checks = app.extensions["checks"] = {"staff": 0, "tenant b": 0}

    def answer(table: dict[str, str]) -> tuple[str, int]:
        if table.get(request.form["email"]) == request.form["password"]:
            lockout.succeeded()
            return "welcome", 200
        return "no", 401

    @app.post("/login")
    @lockout.lockout_on_failure(by=("ip", "form:email"))
    def customer_login() -> tuple[str, int]:
        return answer(customers)

    @app.post("/admin/login")
    @lockout.lockout_on_failure(by=("ip", "form:email"))
    def staff_login() -> tuple[str, int]:
        checks["staff"] += 1
        return answer(staff)

    @app.post("/t/<tenant>/login")
    @lockout.lockout_on_failure(by=("ip", "form:email"), scope="tenants")
    def tenant_login(tenant: str) -> tuple[str, int]:
        checks["tenant b"] += tenant == "b"
        return answer(tenants[tenant])

    @app.post("/t2/<tenant>/login")
    @lockout.lockout_on_failure(by=("ip", "view_arg:tenant", "form:email"))
    def tenant_login_keyed(tenant: str) -> tuple[str, int]:
        checks["tenant b"] += tenant == "b"
        return answer(tenants[tenant])

    return app


@pytest.mark.parametrize(
    ("mint", "target", "counter"),
    [
        ("/login", "/admin/login", "staff"),
        ("/t/a/login", "/t/b/login", "tenant b"),
        ("/t2/a/login", "/t2/b/login", "tenant b"),
    ],
    ids=["another-scope", "another-table-same-scope", "tenant-in-the-keys"],
)
def test_minted_device_cookies_add_no_guesses(
    mint: str, target: str, counter: str
) -> None:
    app = two_tables_app()
    email = "admin@corp.example" if counter == "staff" else "alice@x"
    for round_ in range(40):
        attacker = app.test_client()  # a fresh browser: a fresh cookie
        addr = {"REMOTE_ADDR": f"198.51.100.{round_ + 1}"}
        own = {"email": email, "password": "attacker's own"}
        assert attacker.post(mint, data=own, environ_base=addr).status_code in (
            200,
            429,
        )
        for i in range(4):
            attacker.post(
                target,
                data={"email": email, "password": f"guess{round_}-{i}"},
                environ_base=addr,
            )
    # One policy's worth at most (it was 160 of 160 with minted cookies).
    assert app.extensions["checks"][counter] <= 5


def ascii_only(name: str) -> str:
    # unidecode-less apps: keep what survives encode("ascii", "ignore").
    return (
        unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    )


def transliterating(name: str) -> str:
    # Postgres unaccent: letters without a decomposition map to plain ones.
    table = str.maketrans(
        {"ł": "l", "ı": "i", "ø": "o", "đ": "d", "ɫ": "l", "ⱥ": "a", "ɪ": "i", "ɇ": "e"}
    )
    return accent_insensitive(name).translate(table)


@pytest.mark.parametrize(
    ("lookup", "spellings"),
    [
        (
            ascii_only,
            ["łalice", "ıalice", "alice中", "aliceø", "ali\u0142ce", "ALİCE"]
            + ["aliceß", "ßalice", "aẞlice", "alßice"],
        ),
        (
            transliterating,
            ["ałice", "alıce", "ALıCE", "ałıce", "áłice", "alıçe"]
            + ["aɫice", "ⱥlice", "alɪce", "aɫıce"],
        ),
    ],
    ids=["ascii-only", "transliterating"],
)
def test_letters_without_a_decomposition_gain_nothing(
    lookup: Callable[[str], str], spellings: list[str]
) -> None:
    app = user_app(lookup, devices=False)
    assert {lookup(s) for s in spellings} == {"alice"}
    client = app.test_client()
    for i, name in enumerate(spellings * 10):
        client.post(
            "/login",
            data={"username": name, "password": f"guess{i}"},
            environ_base={"REMOTE_ADDR": f"203.0.113.{i % 250}"},
        )
    assert app.extensions["victim_checks"][0] <= 5  # was 400 of 400


def test_an_untyped_login_held_while_the_key_goes_clean_takes_no_guess_back(
    clock: FakeClock,
) -> None:
    # The attacker's login names his own "Alice" in the form and "alice" in
    # the query string: no spelling is typed, so a success only gives the
    # attempt back. A slow check lets alice's key go clean meanwhile, and
    # guesses at alice come in before it settles.
    app = Flask(__name__)
    app.config.update(
        LOCKOUT_WINDOW_SECONDS=1,
        LOCKOUT_ACCOUNT_WINDOW_SECONDS=1,
        LOCKOUT_MAX_FAILURES=5,
        LOCKOUT_IP_MAX_FAILURES=1000,
    )
    lockout = Lockout(app, storage=MemoryStorage(clock=clock))
    answers: list[int] = []

    def guess(i: int) -> int:
        data = {"username": VICTIM, "password": f"guess{i}"}
        return app.test_client().post("/login", data=data).status_code

    @app.post("/login")
    @lockout.lockout_on_failure(by="form:username")
    def login() -> tuple[str, int]:
        if request.form["username"] == "Alice":
            clock.advance(1.5)  # the slow check: alice's key is clean again
            answers.extend(guess(i) for i in range(4))
            lockout.succeeded()
            return "welcome", 200
        return "no", 401

    client = app.test_client()
    signed_in = client.post("/login?username=alice", data={"username": "Alice"})
    assert signed_in.status_code == 200 and answers == [401] * 4
    assert guess(4) == 401  # the fifth guess locks alice's key
    assert guess(5) == 429  # was 401: the login took one guess back
