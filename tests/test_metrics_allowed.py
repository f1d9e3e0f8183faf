"""``decision="allowed"`` as DESIGN §6 names it: a request let through."""

from __future__ import annotations

from flask import Flask
from prometheus_client import CollectorRegistry

from flask_lockout import Lockout


def test_a_throttled_request_let_through_is_counted_as_allowed() -> None:
    app = Flask(__name__)
    app.config["LOCKOUT_METRICS"] = True
    lockout = Lockout()
    registry = CollectorRegistry()
    lockout.init_metrics(registry)
    lockout.init_app(app)

    @app.get("/search")
    @lockout.throttled("5/minute")
    def search() -> str:
        return "results"

    client = app.test_client()
    for _ in range(2):
        assert client.get("/search").status_code == 200
    labels = {"endpoint": "search", "decision": "allowed"}
    assert registry.get_sample_value("flask_lockout_decisions_total", labels) == 2
