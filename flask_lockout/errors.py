"""Exceptions raised by Flask-Lockout."""

from __future__ import annotations

import math

from werkzeug.exceptions import ServiceUnavailable, TooManyRequests


class ConfigurationError(ValueError):
    """A setting has a value that cannot work. The message names the setting."""


class StorageError(Exception):
    """The storage backend failed to answer a decision.

    Raised at the storage boundary in place of the client library's own
    errors, so the caller alone decides whether to fail open or closed.
    """


class StorageUnavailable(StorageError):
    """The storage backend could not be reached or did not answer in time."""


def _whole_seconds(seconds: float) -> int:
    return max(1, math.ceil(seconds))


class TooManyAttempts(TooManyRequests):
    """429: a key is locked, over its limit, or its attempts are all in flight.

    :param retry_after: seconds until a retry can succeed; sent as the
        ``Retry-After`` header, rounded up to a whole second of at least 1.
    """

    description = "Too many attempts. Try again later."

    def __init__(self, retry_after: float, description: str | None = None) -> None:
        self.retry_after_seconds = _whole_seconds(retry_after)
        super().__init__(description, retry_after=self.retry_after_seconds)


class StorageOutage(ServiceUnavailable):
    """503: storage is down and the policy is to fail closed.

    :param retry_after: seconds to wait before retrying, sent as
        ``Retry-After``.
    """

    description = "The service is temporarily unable to check this request."

    def __init__(self, retry_after: float = 5, description: str | None = None) -> None:
        self.retry_after_seconds = _whole_seconds(retry_after)
        super().__init__(description, retry_after=self.retry_after_seconds)
