"""Flask-Lockout: brute-force protection for Flask."""

from __future__ import annotations

from .client_ip import get_client_ip
from .errors import (
    ConfigurationError,
    StorageError,
    StorageOutage,
    StorageUnavailable,
    TooManyAttempts,
)
from .extension import Lockout
from .keys import MissingKeyValue
from .limits import Limit, parse_limit, parse_limits
from .lockout import Attempt, LockoutConfig, LoginLockout
from .ratelimit import SlidingWindowStore
from .signals import (
    failure_recorded,
    locked_out,
    lockout_reset,
    rate_limited,
    storage_error,
)
from .storage import (
    LockoutBackend,
    MemoryStorage,
    RateLimitResult,
    RateLimitStore,
    RedisStorage,
    Storage,
    ThrottleBackend,
    storage_from_client,
    storage_from_uri,
)
from .throttle import AttemptThrottle, ThrottleStatus

__version__ = "0.1.0.dev0"

__all__ = [
    "Attempt",
    "AttemptThrottle",
    "ConfigurationError",
    "Limit",
    "Lockout",
    "LockoutBackend",
    "LockoutConfig",
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
    "failure_recorded",
    "get_client_ip",
    "locked_out",
    "lockout_reset",
    "parse_limit",
    "parse_limits",
    "rate_limited",
    "storage_error",
    "storage_from_client",
    "storage_from_uri",
]
