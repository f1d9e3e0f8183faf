"""Exceptions raised by Flask-Lockout, with one root: :class:`LockoutError`.

These are domain errors. The HTTP refusals subclass werkzeug's exception
types so that a Flask app can handle them by status code; how they are
rendered (JSON or HTML, the wait in words) is the Flask layer's business.
"""

from __future__ import annotations

from werkzeug.exceptions import (
    BadRequest,
    ServiceUnavailable,
    TooManyRequests,
)

from .policy import whole_seconds


class LockoutError(Exception):
    """The root of every exception Flask-Lockout raises.

    >>> from flask_lockout import StorageError, TooManyAttempts
    >>> [issubclass(e, LockoutError) for e in (StorageError, TooManyAttempts)]
    [True, True]
    """


class ConfigurationError(LockoutError, ValueError):
    """A setting has a value that cannot work. The message names the setting.

    >>> from flask import Flask
    >>> from flask_lockout import Lockout
    >>> app = Flask(__name__)
    >>> app.config["LOCKOUT_FAIL_MODE"] = "maybe"
    >>> Lockout(app)
    Traceback (most recent call last):
      ...
    flask_lockout.errors.ConfigurationError: LOCKOUT_FAIL_MODE must be one of ...
    """


class Refusal(LockoutError):
    """An HTTP answer of ours (429, 503, 400), mixed in after the werkzeug
    class: Flask's handler lookup then finds an app's handler for the status
    code or for ``HTTPException`` before the extension's own, which renders
    it as JSON or a page with the wait in words."""

    retry_after_seconds: int | None = None


class StorageError(LockoutError):
    """The storage backend failed to answer a decision.

    Raised at the storage boundary in place of the client library's own
    errors, so that one place decides what an outage means.

    >>> from flask_lockout import LoginLockout, storage_from_uri
    >>> lockout = LoginLockout(storage=storage_from_uri("redis://127.0.0.1:1/0"))
    >>> try:
    ...     lockout.record_failure("login:alice")
    ... except StorageError:
    ...     print("storage is down: fail open or closed here")
    storage is down: fail open or closed here
    """


class StorageUnavailable(StorageError):
    """The storage backend could not be reached or did not answer in time.

    >>> from flask_lockout import storage_from_uri
    >>> try:
    ...     storage_from_uri("redis://127.0.0.1:1/0").ping()
    ... except StorageUnavailable as error:
    ...     print("unreachable")
    unreachable
    """


class TooManyAttempts(TooManyRequests, Refusal):
    """429: a key is locked or over its limit.

    :param retry_after: seconds until a retry can succeed; sent as the
        ``Retry-After`` header, rounded up to a whole second of at least 1.

    >>> error = TooManyAttempts(2.5)
    >>> error.code, error.retry_after_seconds, dict(error.get_headers())["Retry-After"]
    (429, 3, '3')
    """

    description = "Too many attempts. Try again later."

    def __init__(self, retry_after: float, description: str | None = None) -> None:
        self.retry_after_seconds = whole_seconds(retry_after)
        super().__init__(description, retry_after=self.retry_after_seconds)


class StorageOutage(ServiceUnavailable, Refusal):
    """503: storage is down and the policy is to fail closed.

    :param retry_after: seconds to wait before retrying, sent as
        ``Retry-After``.

    >>> outage = StorageOutage(5)
    >>> outage.code, dict(outage.get_headers())["Retry-After"]
    (503, '5')
    """

    description = "The service is temporarily unable to check this request."

    def __init__(self, retry_after: float = 5, description: str | None = None) -> None:
        self.retry_after_seconds = whole_seconds(retry_after)
        super().__init__(description, retry_after=self.retry_after_seconds)


class MissingKeyValue(BadRequest, Refusal):
    """400: the field a key spec reads is missing or empty.

    >>> MissingKeyValue("The request has no 'email'.").code
    400
    """
