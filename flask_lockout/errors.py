"""Exceptions raised by Flask-Lockout."""

from __future__ import annotations

import json
import math
from typing import Any

from markupsafe import escape
from werkzeug.exceptions import HTTPException, ServiceUnavailable, TooManyRequests
from werkzeug.sansio.response import Response as SansIOResponse
from werkzeug.wrappers import Request, Response


class ConfigurationError(ValueError):
    """A setting has a value that cannot work. The message names the setting.

    >>> from flask import Flask
    >>> from flask_lockout import Lockout
    >>> app = Flask(__name__)
    >>> app.config["LOCKOUT_FAIL_OPEN"] = "maybe"
    >>> Lockout(app)
    Traceback (most recent call last):
      ...
    flask_lockout.errors.ConfigurationError: LOCKOUT_FAIL_OPEN must be True or ...
    """


class StorageError(Exception):
    """The storage backend failed to answer a decision.

    Raised at the storage boundary in place of the client library's own
    errors, so the caller alone decides whether to fail open or closed.

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


def _whole_seconds(seconds: float) -> int:
    return max(1, math.ceil(seconds))


class _Negotiated(HTTPException):
    """Answers JSON clients with JSON and everyone else with a short page."""

    retry_after_seconds: int

    def get_response(  # type: ignore[override]
        self,
        environ: dict[str, Any] | Request | None = None,
        scope: dict[str, Any] | None = None,
    ) -> SansIOResponse:
        request = Request(environ) if isinstance(environ, dict) else environ
        headers = dict(self.get_headers(None, scope))
        if request is not None and _wants_json(request):
            body = json.dumps(
                {"error": self.description, "retry_after": self.retry_after_seconds}
            )
            headers["Content-Type"] = "application/json"
        else:
            name, text = escape(self.name), escape(self.description or "")
            body = (
                f"<!doctype html>\n<title>{self.code} {name}</title>\n"
                f"<h1>{name}</h1>\n<p>{text}</p>\n"
            )
        return Response(body, self.code, headers)


def _wants_json(request: Request) -> bool:
    default = "application/json" if request.is_json else "text/html"
    offered = [default, "text/html" if request.is_json else "application/json"]
    accept = request.accept_mimetypes
    return (
        accept.best_match(offered, default=default) or default
    ) == "application/json"


class TooManyAttempts(_Negotiated, TooManyRequests):
    """429: a key is locked, over its limit, or its attempts are all in flight.

    :param retry_after: seconds until a retry can succeed; sent as the
        ``Retry-After`` header, rounded up to a whole second of at least 1.

    >>> error = TooManyAttempts(2.5)
    >>> error.code, error.retry_after_seconds, dict(error.get_headers())["Retry-After"]
    (429, 3, '3')
    """

    description = "Too many attempts. Try again later."

    def __init__(self, retry_after: float, description: str | None = None) -> None:
        self.retry_after_seconds = _whole_seconds(retry_after)
        super().__init__(description, retry_after=self.retry_after_seconds)


class StorageOutage(_Negotiated, ServiceUnavailable):
    """503: storage is down and the policy is to fail closed.

    :param retry_after: seconds to wait before retrying, sent as
        ``Retry-After``.

    >>> outage = StorageOutage(5)
    >>> outage.code, dict(outage.get_headers())["Retry-After"]
    (503, '5')
    """

    description = "The service is temporarily unable to check this request."

    def __init__(self, retry_after: float = 5, description: str | None = None) -> None:
        self.retry_after_seconds = _whole_seconds(retry_after)
        super().__init__(description, retry_after=self.retry_after_seconds)
