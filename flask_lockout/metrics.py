"""Prometheus metrics (``LOCKOUT_METRICS = True``), on ``prometheus_client``.

``prometheus_client`` is optional: ``pip install "Flask-Lockout[metrics]"``.
Exposing the metrics (a ``/metrics`` view, ``make_wsgi_app``) stays the
app's choice.
"""

from __future__ import annotations

import threading
import weakref
from types import ModuleType
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Gauge

#: The values of the ``decision`` label.
DECISIONS = ("allowed", "rate_limited", "locked", "failure", "success")

#: The ``endpoint`` label of a decision made outside a request.
NO_ENDPOINT = "none"

# One set of collectors per registry: prometheus_client refuses a second
# registration of a name, and several apps (or tests) in one process may
# each turn metrics on.
_collectors: weakref.WeakKeyDictionary[Any, tuple[Counter, Counter, Gauge, Gauge]] = (
    weakref.WeakKeyDictionary()
)
_collectors_lock = threading.Lock()


def _prometheus() -> ModuleType:
    try:
        import prometheus_client
    except ImportError:
        raise ConfigurationError(
            "LOCKOUT_METRICS is on but prometheus_client is not installed: pip"
            ' install "Flask-Lockout[metrics]", or set LOCKOUT_METRICS = False.'
        ) from None
    return prometheus_client


class Metrics:
    """The counters and the gauge of one registry.

    :param registry: a ``prometheus_client.CollectorRegistry``; the default
        registry when None. Every :class:`Metrics` on one registry shares
        its collectors.
    :raises ConfigurationError: naming ``LOCKOUT_METRICS`` when
        ``prometheus_client`` is missing.

    >>> from prometheus_client import CollectorRegistry
    >>> registry = CollectorRegistry()
    >>> metrics = Metrics(registry)
    >>> metrics.decision("login", "locked")
    >>> registry.get_sample_value(
    ...     "flask_lockout_decisions_total", {"endpoint": "login", "decision": "locked"}
    ... )
    1.0
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        prom = _prometheus()
        if registry is None:
            registry = prom.REGISTRY
        with _collectors_lock:
            found = _collectors.get(registry)
            if found is None:
                found = _collectors[registry] = (
                    prom.Counter(
                        "flask_lockout_decisions",
                        "Flask-Lockout decisions by endpoint: allowed,"
                        " rate_limited, locked, failure, success.",
                        ["endpoint", "decision"],
                        registry=registry,
                    ),
                    prom.Counter(
                        "flask_lockout_storage_errors",
                        "Storage calls that failed (each one, not each outage).",
                        registry=registry,
                    ),
                    prom.Gauge(
                        "flask_lockout_fallback_active",
                        "1 while this process decides without its shared"
                        " storage (LOCKOUT_FAIL_MODE), else 0.",
                        registry=registry,
                    ),
                    prom.Gauge(
                        "flask_lockout_surge_active",
                        "1 while this process knows the scope is under a surge.",
                        ["scope"],
                        registry=registry,
                        multiprocess_mode="max",
                    ),
                )
        self.registry = registry
        (
            self.decisions,
            self.storage_errors,
            self.fallback_active,
            self.surge_active,
        ) = found

    def decision(self, endpoint: str | None, decision: str) -> None:
        """Count one decision on ``endpoint``.

        :raises ValueError: for a decision not in :data:`DECISIONS`.
        """
        if decision not in DECISIONS:
            raise ValueError(
                f"decision must be one of {', '.join(DECISIONS)}, not {decision!r}."
            )
        self.decisions.labels(endpoint or NO_ENDPOINT, decision).inc()

    def storage_error(self) -> None:
        """Count one failed storage call."""
        self.storage_errors.inc()

    def fallback(self, active: bool) -> None:
        """Set whether this process is on its fallback."""
        self.fallback_active.set(1 if active else 0)

    def surge(self, scope: str, active: bool) -> None:
        """Set whether ``scope`` is under a surge."""
        self.surge_active.labels(scope).set(1 if active else 0)
