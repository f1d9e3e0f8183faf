"""What a newcomer's first hour needs from the docs: how to install an
unreleased package, the example's login, every decorator argument, working
links, multi-worker metrics, a true word on app.config, and a whole
migration from Flask-Limiter."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from werkzeug.security import check_password_hash

from flask_lockout import Lockout
from flask_lockout.config import DEFAULTS

from .test_examples import load

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
README = (ROOT / "README.md").read_text()


def page(name: str) -> str:
    return (DOCS / name).read_text()


def test_the_readme_gives_the_example_apps_login() -> None:
    found = re.search(r"sign in as `([^`]+)` with the\s+password `([^`]+)`", README)
    assert found is not None
    email, password = found.groups()
    users = load("login_app").USERS
    assert check_password_hash(users[email], password)


@pytest.mark.parametrize("text", [README, page("quickstart.rst")])
def test_install_from_a_clone_not_from_the_index(text: str) -> None:
    commands = re.findall(r"^\s*\$?\s*(pip install [^\n#]*)", text, re.MULTILINE)
    commands += re.findall(r"`(pip install [^`]*)`", text)
    assert any(c.startswith("pip install -e .") for c in commands), commands
    bare = [c for c in commands if re.fullmatch(r"pip install Flask-Lockout\s*", c)]
    assert not bare
    assert "not released" in text or "not on the package index" in text


def test_success_failure_and_exempt_when_are_documented() -> None:
    concepts = page("concepts.rst")
    for argument in ("success=", "failure=", "exempt_when="):
        assert f"``{argument}`` (a callable" in concepts, argument
    assert "lockout.succeeded()" in concepts


def test_no_reference_to_a_page_or_name_that_does_not_exist(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-E", "-n", "-q", "-b", "html"]
        + ["docs", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    missing = re.findall(
        r"(py:\w+|std:\w+)? ?reference target not found: (\S+) \[ref\.(\w+)\]",
        result.stderr,
    )
    external = ("time.", "collections.", "typing.", "flask.", "werkzeug.", "redis.")
    written = [
        target
        for _, target, kind in missing
        # Class names in signatures come from annotations, not from prose.
        if kind != "class" and not target.startswith(external)
    ]
    assert written == [], result.stderr


def test_multi_worker_metrics_are_shown() -> None:
    operations = page("operations.rst")
    assert "PROMETHEUS_MULTIPROC_DIR=" in operations
    assert "multiprocess.MultiProcessCollector(registry)" in operations
    assert "decision=" not in operations or "allowed" in operations


def test_the_multiprocess_view_shown_adds_up_the_workers(tmp_path: Path) -> None:
    # prometheus_client reads the directory when it is imported: a fresh
    # interpreter per "worker", as under gunicorn.
    worker = textwrap.dedent(
        """
        from flask import Flask, Response
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
        from prometheus_client import generate_latest, multiprocess
        from flask_lockout import Lockout

        app = Flask(__name__)
        app.config.update(LOCKOUT_METRICS=True, LOCKOUT_DEVICE_COOKIES=False)
        lockout = Lockout(app)

        @app.post("/login")
        @lockout.lockout_on_failure(by="form:email")
        def login():
            return "no", 401

        @app.get("/metrics")
        def metrics():
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)

        client = app.test_client()
        client.post("/login", data={"email": "a@x"})
        print(client.get("/metrics").text)
        """
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    outputs = [
        subprocess.run(
            [sys.executable, "-c", worker],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        for _ in range(2)
    ]
    line = 'flask_lockout_decisions_total{decision="failure",endpoint="login"}'
    assert f"{line} 2.0" in outputs[1]


def test_the_configuration_page_claims_no_write_back() -> None:
    configuration = page("configuration.rst")
    assert "effective values are written back" not in configuration
    assert "``setdefault``" in configuration
    assert "written back" not in README


# -- migrating from Flask-Limiter -------------------------------------------------


def test_the_migration_page_shows_a_whole_app_before_and_after() -> None:
    migrating = page("migrating.rst")
    before = migrating.split("From Flask-Limiter", 1)[1].split("After,", 1)[0]
    for needle in ("Limiter(", "default_limits=", "@limiter.exempt", "@limiter.limit"):
        assert needle in before, needle
    assert "literalinclude:: ../examples/migrated_from_limiter.py" in migrating
    for needle in (
        "LOCKOUT_APP_LIMITS",
        "``@lockout.exempt``",
        "``X-RateLimit-Remaining``",
        "``RateLimit-Remaining``",
        '"retry_after": 60',
        '{"error": ',
        "lockout/429.html",
        "``;``, ``,`` or ``|``",
        '"10 per hour"',
    ):
        assert needle in migrating, needle


def test_the_migrated_app_says_what_flask_limiter_said() -> None:
    example = (ROOT / "examples" / "migrated_from_limiter.py").read_text()
    assert 'LOCKOUT_APP_LIMITS="200 per day, 50 per hour"' in example
    assert "@lockout.exempt" in example
    assert '@lockout.throttled("5/minute, 20/hour"' in example


@pytest.mark.skipif(
    "LOCKOUT_APP_LIMITS" not in DEFAULTS or not hasattr(Lockout, "exempt"),
    reason="LOCKOUT_APP_LIMITS and @lockout.exempt are not built yet",
)
def test_the_migrated_app_runs() -> None:
    app = load("migrated_from_limiter").create_app({"LOCKOUT_DEVICE_COOKIES": False})
    client = app.test_client()
    answers = [client.get("/").status_code for _ in range(51)]
    assert answers == [200] * 50 + [429]
    refused = client.get("/", headers={"Accept": "application/json"})
    assert refused.status_code == 429
    assert set(refused.json) == {"error", "retry_after"}
    assert all(client.get("/health").status_code == 200 for _ in range(60))
    login = client.post("/login", data={"email": "a@x", "password": "?"})
    assert login.status_code == 401 and "RateLimit-Remaining" in login.headers
