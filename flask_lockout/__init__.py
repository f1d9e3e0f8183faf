"""Flask-Lockout: brute-force protection for Flask."""

from __future__ import annotations

from .client_ip import get_client_ip
from .cookies import clear_cookie, set_cookie
from .errors import (
    ConfigurationError,
    LockoutError,
    MissingKeyValue,
    StorageError,
    StorageOutage,
    StorageUnavailable,
    TooManyAttempts,
)
from .extension import Lockout
from .limits import Limit, RateLimitResult, parse_limit, parse_limits
from .lockout import Attempt, LoginLockout
from .policy import LockoutBackend, LockoutConfig
from .ratelimit import RateLimitStore, SlidingWindowStore
from .signals import (
    failure_recorded,
    locked_out,
    lockout_reset,
    new_device_login,
    rate_limited,
    storage_error,
    storage_recovered,
    surge_ended,
    surge_started,
)
from .static import DEFAULT_STATIC_SECURITY_HEADERS
from .storage.base import Storage
from .storage.factory import storage_from_client, storage_from_uri
from .storage.fallback import FallbackStorage
from .storage.memory import MemoryStorage
from .storage.redis import RedisStorage
from .surge import SurgeState
from .throttle import AttemptThrottle, ThrottleBackend, ThrottleStatus
from .tokens import (
    consume_opaque_token,
    generate_opaque_token,
    hash_opaque_token,
    issue_opaque_token,
    verify_opaque_token,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "DEFAULT_STATIC_SECURITY_HEADERS",
    "Attempt",
    "AttemptThrottle",
    "ConfigurationError",
    "FallbackStorage",
    "Limit",
    "Lockout",
    "LockoutBackend",
    "LockoutConfig",
    "LockoutError",
    "LoginLockout",
    "MemoryStorage",
    "MissingKeyValue",
    "RateLimitResult",
    "RateLimitStore",
    "RedisStorage",
    "SlidingWindowStore",
    "Storage",
    "StorageError",
    "StorageOutage",
    "StorageUnavailable",
    "ThrottleBackend",
    "ThrottleStatus",
    "TooManyAttempts",
    "clear_cookie",
    "consume_opaque_token",
    "failure_recorded",
    "generate_opaque_token",
    "get_client_ip",
    "hash_opaque_token",
    "issue_opaque_token",
    "locked_out",
    "lockout_reset",
    "parse_limit",
    "parse_limits",
    "rate_limited",
    "set_cookie",
    "storage_error",
    "storage_recovered",
    "surge_started",
    "surge_ended",
    "new_device_login",
    "SurgeState",
    "storage_from_client",
    "storage_from_uri",
    "verify_opaque_token",
]
