"""``LOCKOUT_*`` settings: defaults, validation, one frozen object per app."""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigurationError
from .limits import Limit, parse_limits
from .policy import LockoutConfig

#: Every setting and its default. ``init_app`` writes the effective values
#: back into ``app.config`` with ``setdefault``.
DEFAULTS: dict[str, Any] = {
    "LOCKOUT_ENABLED": True,
    "LOCKOUT_STORAGE_URI": "memory://",
    "LOCKOUT_KEY_PREFIX": "lockout",
    "LOCKOUT_MAX_FAILURES": 5,
    "LOCKOUT_WINDOW_SECONDS": 900,
    "LOCKOUT_BASE_LOCK_SECONDS": 60,
    "LOCKOUT_BACKOFF_MULTIPLIER": 2.0,
    "LOCKOUT_MAX_LOCK_SECONDS": 3600,
    "LOCKOUT_RESET_AFTER_SECONDS": 86400,
    "LOCKOUT_FAIL_MODE": "memory",
    "LOCKOUT_STORAGE_RETRY_SECONDS": 5.0,
    "LOCKOUT_DEFAULT_LIMITS": "10/minute;100/day",
    "LOCKOUT_HEADERS_ENABLED": True,
    "LOCKOUT_TRUSTED_PROXIES": (),
    "LOCKOUT_TRUSTED_HEADER": "X-Forwarded-For",
    "LOCKOUT_IPV6_PREFIX": 64,
    "LOCKOUT_STATIC_SECURITY_HEADERS": {},
    "LOCKOUT_HARDEN_APP_STATIC": False,
    "LOCKOUT_COOKIE_SECURE": True,
    "LOCKOUT_COOKIE_HTTPONLY": True,
    "LOCKOUT_COOKIE_SAMESITE": "Lax",
    # None: on when the app has a SECRET_KEY to sign them with.
    "LOCKOUT_DEVICE_COOKIES": None,
    "LOCKOUT_MEMORY_MAX_KEYS": 100_000,
    "LOCKOUT_LOCAL_CACHE_SECONDS": 1.0,
    "LOCKOUT_METRICS": False,
    "LOCKOUT_EVENTS_MAX": 1000,
    "LOCKOUT_ACCOUNT_WINDOW_SECONDS": 86400,
    "LOCKOUT_IP_MAX_FAILURES": 20,
    "LOCKOUT_SURGE": True,
    "LOCKOUT_SURGE_MIN_FAILURES": 60,
    "LOCKOUT_SURGE_FACTOR": 5.0,
    "LOCKOUT_SURGE_COOLDOWN_SECONDS": 600,
    "LOCKOUT_SURGE_LIMITS": "3/hour",
    "LOCKOUT_SURGE_NETWORK_LIMITS": "30/hour",
    # None: no limit on routes without @throttled of their own.
    "LOCKOUT_APP_LIMITS": None,
}

#: What a storage outage means: decide from this process's memory, let
#: requests through, or refuse them with 503.
FAIL_MODES = ("memory", "open", "closed")

_TRUSTED_HEADERS = ("X-Forwarded-For", "X-Real-IP", "Forwarded")
_SAMESITE = ("Strict", "Lax", "None")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class SurgeSettings:
    """``LOCKOUT_SURGE*``: when a scope is under a surge of failures, and what
    an attempt from a device without a cookie must then also pass."""

    enabled: bool
    min_failures: int
    factor: float
    cooldown_seconds: float
    limits: tuple[Limit, ...]
    network_limits: tuple[Limit, ...]


@dataclass(frozen=True)
class Settings:
    """The validated ``LOCKOUT_*`` settings of one app."""

    enabled: bool
    storage_uri: str
    key_prefix: str
    policy: LockoutConfig
    fail_mode: str
    storage_retry_seconds: float
    default_limits: tuple[Limit, ...]
    headers_enabled: bool
    trusted_proxies: tuple[Network, ...] | int
    trusted_header: str
    ipv6_prefix: int
    static_security_headers: dict[str, str]
    harden_app_static: bool
    cookie_secure: bool
    cookie_httponly: bool
    cookie_samesite: str | None
    device_cookies: bool | None
    memory_max_keys: int
    local_cache_seconds: float
    metrics: bool
    events_max: int
    #: The policy of account keys (every spec but ``ip``): failures are
    #: remembered until a success or ``LOCKOUT_ACCOUNT_WINDOW_SECONDS``
    #: without a failure.
    account_policy: LockoutConfig
    #: The policy of ``ip`` keys: ``LOCKOUT_IP_MAX_FAILURES`` in the window.
    ip_policy: LockoutConfig
    surge: SurgeSettings
    app_limits: tuple[Limit, ...]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        """Read and check every setting.

        :raises ConfigurationError: naming the first bad key.
        """

        _check_names(config)

        def get(key: str, convert: Callable[[str, Any], Any]) -> Any:
            return convert(key, config.get(key, DEFAULTS[key]))

        max_failures = get("LOCKOUT_MAX_FAILURES", _int)
        try:
            policy = LockoutConfig(
                max_failures=max_failures,
                window_seconds=get("LOCKOUT_WINDOW_SECONDS", _positive),
                base_lock_seconds=get("LOCKOUT_BASE_LOCK_SECONDS", _positive),
                backoff_multiplier=get("LOCKOUT_BACKOFF_MULTIPLIER", _number),
                max_lock_seconds=get("LOCKOUT_MAX_LOCK_SECONDS", _positive),
                reset_after_seconds=get("LOCKOUT_RESET_AFTER_SECONDS", _positive),
            )
            account_window = get("LOCKOUT_ACCOUNT_WINDOW_SECONDS", _positive)
            if account_window < policy.window_seconds:
                raise ConfigurationError(
                    "LOCKOUT_ACCOUNT_WINDOW_SECONDS must be at least"
                    f" LOCKOUT_WINDOW_SECONDS ({account_window!r} <"
                    f" {policy.window_seconds!r})."
                )
            account_policy = dataclasses.replace(
                policy, window_seconds=account_window, window_from_last_failure=True
            )
            ip_policy = dataclasses.replace(
                policy, max_failures=get("LOCKOUT_IP_MAX_FAILURES", _int)
            )
        except ConfigurationError:
            raise
        except ValueError as exc:
            field = str(exc).split(" ", 1)[0]
            raise ConfigurationError(f"LOCKOUT_{field.upper()}: {exc}") from exc
        factor = get("LOCKOUT_SURGE_FACTOR", _number)
        if factor < 1:
            raise _fail("LOCKOUT_SURGE_FACTOR", "at least 1", factor)
        surge = SurgeSettings(
            enabled=get("LOCKOUT_SURGE", _bool),
            min_failures=get("LOCKOUT_SURGE_MIN_FAILURES", _int),
            factor=float(factor),
            cooldown_seconds=get("LOCKOUT_SURGE_COOLDOWN_SECONDS", _non_negative),
            limits=get("LOCKOUT_SURGE_LIMITS", _limits),
            network_limits=get("LOCKOUT_SURGE_NETWORK_LIMITS", _limits),
        )
        return cls(
            enabled=get("LOCKOUT_ENABLED", _bool),
            storage_uri=get("LOCKOUT_STORAGE_URI", _text),
            key_prefix=get("LOCKOUT_KEY_PREFIX", _prefix),
            policy=policy,
            fail_mode=get("LOCKOUT_FAIL_MODE", _fail_mode),
            storage_retry_seconds=get("LOCKOUT_STORAGE_RETRY_SECONDS", _positive),
            default_limits=get("LOCKOUT_DEFAULT_LIMITS", _limits),
            headers_enabled=get("LOCKOUT_HEADERS_ENABLED", _bool),
            trusted_proxies=get("LOCKOUT_TRUSTED_PROXIES", _proxies),
            trusted_header=get("LOCKOUT_TRUSTED_HEADER", _header),
            ipv6_prefix=get("LOCKOUT_IPV6_PREFIX", _ipv6_prefix),
            static_security_headers=get("LOCKOUT_STATIC_SECURITY_HEADERS", _headers),
            harden_app_static=get("LOCKOUT_HARDEN_APP_STATIC", _bool),
            cookie_secure=get("LOCKOUT_COOKIE_SECURE", _bool),
            cookie_httponly=get("LOCKOUT_COOKIE_HTTPONLY", _bool),
            cookie_samesite=get("LOCKOUT_COOKIE_SAMESITE", _samesite),
            device_cookies=get("LOCKOUT_DEVICE_COOKIES", _optional_bool),
            memory_max_keys=get("LOCKOUT_MEMORY_MAX_KEYS", _int),
            local_cache_seconds=get("LOCKOUT_LOCAL_CACHE_SECONDS", _non_negative),
            metrics=get("LOCKOUT_METRICS", _bool),
            events_max=get("LOCKOUT_EVENTS_MAX", _int),
            account_policy=account_policy,
            ip_policy=ip_policy,
            surge=surge,
            app_limits=get("LOCKOUT_APP_LIMITS", _optional_limits),
        )

    def policy_of(self, key: str) -> LockoutConfig:
        """The lockout policy of the logical key ``key``."""
        parts = key.split(":", 2)
        return self.policy_for(parts[1] if len(parts) == 3 else "")

    def policy_for(self, key_type: str) -> LockoutConfig:
        """The lockout policy of keys of ``key_type`` (a logical key's middle
        part): ``ip`` keys, the bucket every device of an account shares, and
        account keys (the rest, a device's own bucket included)."""
        if key_type == "ip":
            return self.ip_policy
        if key_type == "devices":
            # No success clears it: a long memory would lock out an owner
            # who mistypes now and then on a known device.
            return self.policy
        return self.account_policy


def _check_names(config: Mapping[str, Any]) -> None:
    """Refuse the retired key; warn about ``LOCKOUT_*`` keys that are not ours."""
    if "LOCKOUT_FAIL_OPEN" in config:
        raise ConfigurationError(
            "LOCKOUT_FAIL_OPEN is gone: set LOCKOUT_FAIL_MODE to 'memory' (the"
            " default: keep deciding from this process's memory), 'open' or"
            " 'closed'."
        )
    for key in config:
        if isinstance(key, str) and key.startswith("LOCKOUT_") and key not in DEFAULTS:
            nearest = difflib.get_close_matches(key, DEFAULTS, n=1)
            hint = f" Did you mean {nearest[0]}?" if nearest else ""
            warnings.warn(
                f"{key} is not a Flask-Lockout setting and is ignored.{hint}",
                UserWarning,
                stacklevel=4,
            )


def _fail(key: str, expected: str, value: Any) -> ConfigurationError:
    return ConfigurationError(f"{key} must be {expected}, not {value!r}.")


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    # from_prefixed_env turns "1" into 1: accept what people type.
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise _fail(key, "True or False (or 1/0, yes/no, on/off)", value)


def _optional_bool(key: str, value: Any) -> bool | None:
    return None if value is None else _bool(key, value)


def _fail_mode(key: str, value: Any) -> str:
    if isinstance(value, str) and value.strip().lower() in FAIL_MODES:
        return value.strip().lower()
    raise _fail(key, f"one of {', '.join(map(repr, FAIL_MODES))}", value)


def _number(key: str, value: Any) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise _fail(key, "a number", value) from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(key, "a number", value)
    if not math.isfinite(value):
        raise _fail(key, "a finite number", value)
    return value


def _positive(key: str, value: Any) -> float:
    number = _number(key, value)
    if number <= 0:
        raise _fail(key, "greater than 0", value)
    return number


def _non_negative(key: str, value: Any) -> float:
    number = _number(key, value)
    if number < 0:
        raise _fail(key, "0 or more", value)
    return number


def _int(key: str, value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _fail(key, "a whole number of at least 1", value)
    return value


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(key, "a non-empty string", value)
    return value.strip()


def _prefix(key: str, value: Any) -> str:
    text = _text(key, value)
    if "{" in text or "}" in text:
        raise _fail(
            key, "free of '{' and '}' (they are Redis Cluster hash tags)", value
        )
    return text


def _optional_limits(key: str, value: Any) -> tuple[Limit, ...]:
    if value is None or (isinstance(value, str) and not value.strip()):
        return ()
    return _limits(key, value)


def _limits(key: str, value: Any) -> tuple[Limit, ...]:
    try:
        return parse_limits(value)
    except ValueError as exc:
        raise ConfigurationError(f"{key}: {exc}") from exc


def _proxies(key: str, value: Any) -> tuple[Network, ...] | int:
    if value is None:
        return ()
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise _fail(key, "a hop count of 0 or more, or a list of CIDRs", value)
        return value
    if isinstance(value, str):
        value = [part for part in value.replace(",", " ").split() if part]
    if not isinstance(value, list | tuple | set | frozenset):
        raise _fail(key, "a hop count or a list of CIDRs", value)
    networks = []
    for item in value:
        try:
            networks.append(ipaddress.ip_network(str(item).strip(), strict=False))
        except ValueError:
            raise _fail(key, "a list of CIDRs such as '10.0.0.0/8'", item) from None
    return tuple(networks)


def _header(key: str, value: Any) -> str:
    for name in _TRUSTED_HEADERS:
        if isinstance(value, str) and value.strip().lower() == name.lower():
            return name
    raise _fail(key, f"one of {', '.join(_TRUSTED_HEADERS)}", value)


def _ipv6_prefix(key: str, value: Any) -> int:
    if isinstance(value, str) and value.strip().lstrip("/").isdigit():
        value = int(value.strip().lstrip("/"))
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 128:
        raise _fail(key, "a prefix length from 1 to 128", value)
    return value


def _headers(key: str, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str | None) for k, v in value.items()
    ):
        raise _fail(key, "a mapping of header names to strings", value)
    return dict(value)


def _samesite(key: str, value: Any) -> str | None:
    if value is None or value is False:
        return None
    for option in _SAMESITE:
        if isinstance(value, str) and value.strip().lower() == option.lower():
            return option
    raise _fail(key, "'Strict', 'Lax', 'None' or None", value)
