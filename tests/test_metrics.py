"""Prometheus metrics, on private registries."""

from __future__ import annotations

import sys

import prometheus_client
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from flask_lockout import ConfigurationError
from flask_lockout.metrics import DECISIONS, Metrics

from .conftest import run_in_threads


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_decisions_are_counted_by_endpoint_and_decision() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    for decision in DECISIONS:
        metrics.decision("login", decision)
    metrics.decision("login", "locked")
    metrics.decision("otp", "failure")
    metrics.decision(None, "success")
    name = "flask_lockout_decisions_total"
    assert sample(registry, name, endpoint="login", decision="locked") == 2
    assert sample(registry, name, endpoint="login", decision="allowed") == 1
    assert sample(registry, name, endpoint="otp", decision="failure") == 1
    assert sample(registry, name, endpoint="none", decision="success") == 1
    assert sample(registry, name, endpoint="otp", decision="allowed") is None


def test_an_unknown_decision_is_refused() -> None:
    with pytest.raises(ValueError, match="decision must be one of"):
        Metrics(CollectorRegistry()).decision("login", "maybe")


def test_storage_errors_and_the_fallback_gauge() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    assert sample(registry, "flask_lockout_storage_errors_total") == 0
    assert sample(registry, "flask_lockout_fallback_active") == 0
    metrics.storage_error()
    metrics.storage_error()
    metrics.fallback(True)
    assert sample(registry, "flask_lockout_storage_errors_total") == 2
    assert sample(registry, "flask_lockout_fallback_active") == 1
    metrics.fallback(False)
    assert sample(registry, "flask_lockout_fallback_active") == 0


def test_the_exposition_names() -> None:
    registry = CollectorRegistry()
    Metrics(registry).decision("login", "rate_limited")
    text = generate_latest(registry).decode()
    assert (
        'flask_lockout_decisions_total{decision="rate_limited",endpoint="login"} 1.0'
        in text
    )
    assert "# TYPE flask_lockout_storage_errors_total counter" in text
    assert "# TYPE flask_lockout_fallback_active gauge" in text


def test_several_apps_share_one_registry() -> None:
    # A second registration of a name would raise in prometheus_client.
    registry = CollectorRegistry()
    first, second = Metrics(registry), Metrics(registry)
    first.decision("login", "failure")
    second.decision("login", "failure")
    assert (
        sample(
            registry,
            "flask_lockout_decisions_total",
            endpoint="login",
            decision="failure",
        )
        == 2
    )


def test_the_default_registry_is_used_when_none_is_given() -> None:
    Metrics().storage_error()
    Metrics().storage_error()  # no duplicate registration
    found = prometheus_client.REGISTRY.get_sample_value(
        "flask_lockout_storage_errors_total"
    )
    assert found is not None and found >= 2


def test_counts_are_exact_under_threads() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)

    def work() -> None:
        for _ in range(500):
            metrics.decision("login", "allowed")

    run_in_threads(work, 8)
    assert (
        sample(
            registry,
            "flask_lockout_decisions_total",
            endpoint="login",
            decision="allowed",
        )
        == 4000
    )


def test_a_missing_prometheus_client_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ConfigurationError) as raised:
        Metrics(CollectorRegistry())
    message = str(raised.value)
    assert "LOCKOUT_METRICS" in message
    assert 'pip install "Flask-Lockout[metrics]"' in message
