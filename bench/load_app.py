"""The login view that bench/load.py serves under gunicorn, one shape per
scenario, with a cheap password check by default so that a load test
measures the protection, not password hashing.

    LOAD_SCENARIO=quickstart gunicorn -w 2 --threads 4 --chdir bench \\
        'load_app:create_app()'
    LOAD_SCENARIO=flood python bench/load_app.py prelock   # lock the accounts

LOAD_SCENARIO picks the shape:

- ``bare``: the view alone.
- ``limiter``: Flask-Limiter, two limits (ip, email) on Redis (LOAD_REDIS),
  fixed window, its defaults otherwise (headers off).
- ``throttled``: ``@lockout.throttled`` on ip + email.
- ``lockout``: ``@lockout.lockout_on_failure`` on ip + email.
- ``quickstart``, ``flood``, ``flood-accounts``: both decorators stacked,
  as the quickstart does. ``prelock`` locks the accounts of a flood before
  the server starts (see bench/load.py).

The limits are high enough never to refuse at these rates, and
FLASK_LOCKOUT_* settings (read with ``from_prefixed_env``) set the policy.
The view declares a success with ``lockout.succeeded()`` (on code from before
9b637cd, where any 2xx was a success, it only returns 200).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from benchlib import declare_success
from flask import Flask, request
from werkzeug.security import check_password_hash, generate_password_hash

RIGHT = hashlib.sha256(b"correct horse battery staple").digest()
#: Never reached at these rates: throughput runs must not be refused.
HIGH = "100000000/hour"
KEYS = ("ip", "form:email")
#: How many accounts wrk rotates through (bench/load.py's Lua script).
ACCOUNTS = 5000


@functools.cache
def real_hash() -> str:
    """A Werkzeug scrypt hash, as examples/login_app.py checks: made on first
    use (LOAD_REAL_HASH=1), not on import, which bench/python_cost.py runs
    under callgrind."""
    return generate_password_hash("correct horse battery staple")


def password_ok(password: str) -> bool:
    if os.environ.get("LOAD_REAL_HASH") == "1":
        return check_password_hash(real_hash(), password)
    given = hashlib.sha256(password.encode()).digest()
    return hmac.compare_digest(given, RIGHT)


def create_app() -> Flask:
    scenario = os.environ.get("LOAD_SCENARIO", "quickstart")
    app = Flask(__name__)
    app.config.update(LOCKOUT_MAX_FAILURES=10**9)
    app.config.from_prefixed_env()

    @app.get("/package")
    def package() -> str:
        """Where the served flask_lockout comes from, for bench/load.py."""
        import flask_lockout

        return os.path.dirname(os.path.dirname(flask_lockout.__file__))

    @app.get("/address-state")
    def address_state() -> str:
        """The lockout state of the address wrk comes from, read in storage."""
        state = app.extensions.get("lockout")
        if state is None:
            return "-"
        found = state.storage.lockout_status(
            "login:ip:127.0.0.1", state.settings.policy
        )
        return f"locked={bool(found.locked)} failures={found.failures}"

    if scenario == "bare":

        @app.post("/login")
        def bare() -> tuple[str, int]:
            ok = password_ok(request.form.get("password", ""))
            return ("welcome", 200) if ok else ("no", 401)

        return app
    if scenario == "limiter":
        return _limiter_app(app)

    from flask_lockout import Lockout

    lockout = Lockout(app)

    def login() -> tuple[str, int]:
        if password_ok(request.form.get("password", "")):
            declare_success(lockout)
            return "welcome", 200
        return "no", 401

    if scenario == "throttled":
        view = lockout.throttled(HIGH, by=KEYS)(login)
    elif scenario == "lockout":
        view = lockout.lockout_on_failure(by=KEYS)(login)
    elif scenario in ("quickstart", "flood", "flood-accounts"):
        view = lockout.throttled(HIGH, by=KEYS)(
            lockout.lockout_on_failure(by=KEYS)(login)
        )
    else:
        raise SystemExit(f"unknown LOAD_SCENARIO {scenario!r}")
    app.add_url_rule("/login", "login", view, methods=["POST"])
    return app


def _limiter_app(app: Flask) -> Flask:
    from flask_limiter import Limiter
    from flask_limiter.util import get_remote_address

    limiter = Limiter(
        get_remote_address,
        app=app,
        storage_uri=os.environ.get("LOAD_REDIS", "redis://127.0.0.1:6379/0"),
        key_prefix=os.environ.get("FLASK_LOCKOUT_KEY_PREFIX", "load-limiter"),
    )

    @app.post("/login")
    @limiter.limit(HIGH, key_func=get_remote_address)
    @limiter.limit(HIGH, key_func=lambda: request.form.get("email", ""))
    def login() -> tuple[str, int]:
        ok = password_ok(request.form.get("password", ""))
        return ("welcome", 200) if ok else ("no", 401)

    return app


def prelock(lock_address: bool) -> None:
    """Lock the ACCOUNTS accounts wrk rotates through (each from addresses of
    its own, so that no address locks), and with ``lock_address`` the
    address wrk comes from too. Run with the flood's settings; 8 threads,
    so that their Redis waits overlap."""
    app = create_app()
    failures = app.config["LOCKOUT_MAX_FAILURES"]
    statuses: Counter[int] = Counter()

    def lock(accounts: range) -> Counter[int]:
        client, seen = app.test_client(), Counter[int]()
        for i in accounts:
            for j in range(failures):
                n = i * failures + j + 1
                # A string in the WSGI environ: no traffic goes to it.
                address = f"127.{n // 62500 % 250 + 1}.{n // 250 % 250}.{n % 250 + 1}"
                seen[
                    client.post(
                        "/login",
                        data={"email": f"user{i}@example.com", "password": "wrong"},
                        environ_base={"REMOTE_ADDR": address},
                    ).status_code
                ] += 1
        return seen

    with ThreadPoolExecutor(8) as pool:
        for seen in pool.map(lock, [range(k, ACCOUNTS, 8) for k in range(8)]):
            statuses.update(seen)
    if lock_address:
        client = app.test_client()
        for i in range(failures):
            client.post(
                "/login",
                data={"email": f"address-lock{i}@example.com", "password": "wrong"},
                environ_base={"REMOTE_ADDR": "127.0.0.1"},
            )
    print(f"prelock: {sum(statuses.values())} wrong passwords, statuses {statuses}")


if __name__ == "__main__":
    if sys.argv[1:] != ["prelock"]:
        raise SystemExit(__doc__)
    prelock(os.environ.get("LOAD_SCENARIO") == "flood")
