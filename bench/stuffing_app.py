"""The login app that bench/stuffing.py serves under gunicorn: the README's
quickstart shape behind a trusted proxy, with a cheap password check and
counters that say what an attack got through.

    STUFFING_REDIS=redis://127.0.0.1:6379/0 STUFFING_COUNTERS=bench-stuffing \\
    FLASK_LOCKOUT_STORAGE_URI=redis://127.0.0.1:6379/0 \\
        gunicorn -w 2 --threads 4 -k gthread --chdir bench \\
        'stuffing_app:create_app()'

The view is the quickstart's::

    @lockout.throttled("10/min;100/day", by=("ip", "form:email"))
    @lockout.lockout_on_failure(by=("ip", "form:email"), scope="login")

with ``LOCKOUT_TRUSTED_PROXIES = ["127.0.0.1/32"]`` (the client sets
``X-Forwarded-For``, as a proxy in front of the app would) and a
``SECRET_KEY``, so device cookies are on. FLASK_LOCKOUT_* settings (read
with ``from_prefixed_env``) set the rest.

Every account's real password is :func:`password_for` its address, so the
benchmark builds a leaked list with right passwords in it without a user
table. Accounts ``leaked<N>@example.com`` are the attacked ones,
``real<N>@example.com`` the real users': the view tells them apart only to
count, in Redis (STUFFING_REDIS) under STUFFING_COUNTERS, in one pipelined
call after the password check:

- ``<counters>:guesses``: attacker guesses that reached the password check;
- ``<counters>:takeovers``: right passwords for attacked accounts, and the set
  ``<counters>:taken`` of the accounts taken over;
- ``<counters>:real-checks``: real users' attempts that reached the check;
- ``<counters>:surge-first``: the first ``surge_started`` signal (JSON: its
  Unix time and keyword data: scope, failures a minute, threshold), and
  ``<counters>:surge-count`` how many were sent (``surge-end-first`` and
  ``surge-end-count`` for ``surge_ended``), when the served Flask-Lockout
  has the signals.

Each worker writes ``worker <pid> serves flask_lockout from <file>`` to
stderr when it loads the app, so the benchmark can check which tree it runs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
import time
from typing import Any

import redis
from benchlib import declare_success
from flask import Flask, request

import flask_lockout

SALT = b"flask-lockout bench/stuffing.py"
#: Shared by both workers: a device cookie one issues, the other accepts.
SECRET_KEY = "bench-stuffing-not-a-secret"
LIMITS = "10/min;100/day"
KEYS = ("ip", "form:email")
ATTACKED = "leaked"


def password_for(email: str) -> str:
    """The real password of ``email``'s account."""
    return hmac.new(SALT, email.encode(), hashlib.sha256).hexdigest()[:16]


def password_ok(email: str, password: str) -> bool:
    """A cheap check (two SHA-256 and a constant-time compare), so that the
    benchmark measures the protection, not password hashing."""
    want = hashlib.sha256(password_for(email).encode()).digest()
    given = hashlib.sha256(password.encode()).digest()
    return hmac.compare_digest(given, want)


def create_app() -> Flask:
    print(
        f"worker {os.getpid()} serves flask_lockout from {flask_lockout.__file__}",
        file=sys.stderr,
        flush=True,
    )
    app = Flask(__name__)
    app.config.update(SECRET_KEY=SECRET_KEY, LOCKOUT_TRUSTED_PROXIES=["127.0.0.1/32"])
    app.config.from_prefixed_env()
    counters = os.environ.get("STUFFING_COUNTERS", "bench-stuffing")
    store = redis.Redis.from_url(
        os.environ.get("STUFFING_REDIS", "redis://127.0.0.1:6379/0")
    )
    _record_surges(app, store, counters)

    from flask_lockout import Lockout

    lockout = Lockout(app)

    @app.get("/package")
    def package() -> str:
        """Where the served flask_lockout comes from."""
        return os.path.dirname(os.path.dirname(flask_lockout.__file__))

    @app.post("/login")
    @lockout.throttled(LIMITS, by=KEYS)
    @lockout.lockout_on_failure(by=KEYS, scope="login")
    def login() -> tuple[str, int]:
        email = request.form.get("email", "")
        ok = password_ok(email, request.form.get("password", ""))
        with store.pipeline(transaction=False) as pipe:
            if email.startswith(ATTACKED):
                pipe.incr(f"{counters}:guesses")
                if ok:
                    pipe.incr(f"{counters}:takeovers")
                    pipe.sadd(f"{counters}:taken", email)
            else:
                pipe.incr(f"{counters}:real-checks")
            pipe.execute()
        if ok:
            declare_success(lockout)
            return "welcome", 200
        return "wrong email or password", 401

    return app


def _record_surges(app: Flask, store: redis.Redis, counters: str) -> None:
    """Keep the first ``surge_started`` and ``surge_ended`` in Redis, when
    the served Flask-Lockout sends them (code from before the surge defence
    has neither)."""
    for name, key in (("surge_started", "surge"), ("surge_ended", "surge-end")):
        signal = getattr(flask_lockout, name, None)
        if signal is None:
            continue

        def record(sender: Any, _key: str = key, **data: Any) -> None:
            first = {"time": time.time(), **{k: str(v) for k, v in data.items()}}
            with store.pipeline(transaction=False) as pipe:
                pipe.set(f"{counters}:{_key}-first", json.dumps(first), nx=True)
                pipe.incr(f"{counters}:{_key}-count")
                pipe.execute()

        signal.connect(record, app, weak=False)
