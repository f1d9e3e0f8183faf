"""``LOCKOUT_APP_LIMITS`` and ``@lockout.exempt``: Flask-Limiter's
``default_limits`` and ``exempt``, per client address and route."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from flask.views import MethodView

from flask_lockout import ConfigurationError, Lockout


def make_app(tmp_path: Path, limits: object = "2/minute") -> Flask:
    (tmp_path / "static").mkdir(exist_ok=True)
    (tmp_path / "static" / "app.css").write_text("body {}")
    app = Flask(__name__, static_folder=str(tmp_path / "static"))
    app.config["LOCKOUT_APP_LIMITS"] = limits
    lockout = Lockout(app)

    @app.get("/")
    def index() -> str:
        return "home"

    @app.get("/other")
    def other() -> str:
        return "other"

    @app.get("/health")
    @lockout.exempt
    def health() -> str:
        return "ok"

    @app.get("/search")
    @lockout.throttled("5/minute")
    def search() -> str:
        return "results"

    class Items(MethodView):
        decorators = [lockout.exempt]

        def get(self) -> str:
            return "items"

    app.add_url_rule("/items", view_func=Items.as_view("items"))
    return app


def test_every_route_without_limits_of_its_own_gets_the_app_limits(
    tmp_path: Path,
) -> None:
    client = make_app(tmp_path).test_client()
    assert [client.get("/").status_code for _ in range(3)] == [200, 200, 429]
    refused = client.get("/", headers={"Accept": "application/json"})
    assert refused.status_code == 429 and "retry_after" in refused.json
    # Per route, as Flask-Limiter's default_limits.
    assert client.get("/other").status_code == 200


def test_exempt_throttled_and_static_routes_keep_their_own_rules(
    tmp_path: Path,
) -> None:
    client = make_app(tmp_path).test_client()
    assert all(client.get("/health").status_code == 200 for _ in range(10))
    assert all(client.get("/items").status_code == 200 for _ in range(10))
    for _ in range(10):
        with client.get("/static/app.css") as static:
            assert static.status_code == 200
    assert [client.get("/search").status_code for _ in range(6)] == [200] * 5 + [429]


def test_no_app_limits_by_default(tmp_path: Path) -> None:
    client = make_app(tmp_path, None).test_client()
    assert all(client.get("/").status_code == 200 for _ in range(20))


def test_a_bad_app_limit_fails_at_init_app_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="LOCKOUT_APP_LIMITS"):
        make_app(tmp_path, "lots/minute")
