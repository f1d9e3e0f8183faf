"""How refusals look: JSON for JSON clients, a short page for people, and
the ``RateLimit-*`` headers.

An app shows its own page by adding a template ``lockout/429.html`` (or
``lockout/503.html``, ``lockout/400.html``); it gets ``error``,
``retry_after`` (seconds), ``wait`` (in words), ``back_url`` (the page
to try again from, or None when the route answers no GET) and
``challenge_required`` (during a surge: show the view's challenge). JSON
bodies carry ``"challenge_required": true`` then. An app's own
``errorhandler(429)`` wins over all of this: the refusals are rendered
through Flask's own error handling.
"""

from __future__ import annotations

import functools
import json
import math
import re
from typing import Any

from flask import current_app, render_template, request
from jinja2 import TemplateNotFound
from markupsafe import escape
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request, Response

from .limits import RateLimitResult
from .request_state import challenge_required, request_state

_PAGE = """<!doctype html>
<html lang="en">
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<h1>{title}</h1>
<p>{message}</p>
{back}</html>
"""

_TITLES = {
    429: "Too many attempts",
    503: "Temporarily unavailable",
    400: "Something is missing",
}


def wait_in_words(seconds: int) -> str:
    """``"45 seconds"``, ``"2 minutes"``, ``"1 hour and 5 minutes"``: rounded up,
    never shorter than the real wait.

    >>> wait_in_words(1), wait_in_words(61), wait_in_words(3600), wait_in_words(3700)
    ('1 second', '2 minutes', '1 hour', '1 hour and 2 minutes')
    """
    if seconds < 60:
        return _plural(seconds, "second")
    if seconds < 3600:
        return _plural(math.ceil(seconds / 60), "minute")
    hours, rest = divmod(seconds, 3600)
    minutes = math.ceil(rest / 60)
    if minutes == 60:
        hours, minutes = hours + 1, 0
    words = _plural(hours, "hour")
    return f"{words} and {_plural(minutes, 'minute')}" if minutes else words


def _plural(count: int, unit: str) -> str:
    return f"{count} {unit}{'' if count == 1 else 's'}"


def _message(error: HTTPException, retry_after: int | None) -> str:
    if error.code == 429 and retry_after:
        return f"Too many attempts. Try again in {wait_in_words(retry_after)}."
    if error.code == 503 and retry_after:
        return (
            "This check is temporarily unavailable."
            f" Try again in {wait_in_words(retry_after)}."
        )
    return error.description or ""


def wants_json(request: Request) -> bool:
    environ = request.environ
    is_json = _is_json(environ.get("CONTENT_TYPE", ""))
    if environ.get("HTTP_ACCEPT", "").strip() in ("", "*/*"):
        # No preference at all: answer in the request's own format, without
        # parsing anything.
        return is_json
    default = "application/json" if is_json else "text/html"
    offered = [default, "text/html" if is_json else "application/json"]
    best = request.accept_mimetypes.best_match(offered, default=default)
    return (best or default) == "application/json"


@functools.lru_cache(maxsize=64)
def _is_json(content_type: str) -> bool:
    """``Request.is_json`` for a Content-Type header, computed once per value."""
    mimetype = content_type.split(";", 1)[0].strip().lower()
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )


def render_refusal(error: HTTPException) -> Response:
    """The error handler ``init_app`` registers for our refusals: JSON for
    JSON clients, else the app's ``lockout/<code>.html`` or a short page.
    Flask looks up the app's own handler for the status code first."""
    if current_app.trap_http_exception(error):
        # Flask hands trapped exceptions to the handler of their class:
        # they reach the caller, as the app asked.
        raise error
    retry_after = getattr(error, "retry_after_seconds", None)
    message = _message(error, retry_after)
    code = error.code or 500
    response_class = current_app.response_class
    challenge = challenge_required()
    if wants_json(request):
        response = response_class(
            _json_body(message, retry_after, challenge),
            code,
            mimetype="application/json",
        )
    else:
        back_url = _back_url()
        page = _app_page(code, message, retry_after, back_url, challenge)
        if page is None:
            page = _page(_TITLES.get(code, error.name), message, back_url)
        response = response_class(page, code, mimetype="text/html")
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


#: A path that stays on this host in every browser: browsers read ``\\`` as
#: ``/`` and drop tabs and newlines, so ``/\\evil.example`` and
#: ``/\t/evil.example`` lead elsewhere.
_LOCAL_PATH = re.compile(r"/(?![/\\])[^\\\x00-\x20\x7f]*")


def _back_url() -> str | None:
    """The page to try again from: this route, when it answers GET (a
    POST-only route would answer the link with 405) and its path cannot
    lead to another host."""
    rule = request.url_rule
    if rule is None or rule.methods is None or "GET" not in rule.methods:
        return None
    path = request.path
    return path if _LOCAL_PATH.fullmatch(path) else None


# A flood meets the same few answers again and again: build each once.
@functools.lru_cache(maxsize=256)
def _json_body(message: str, retry_after: int | None, challenge: bool) -> str:
    body: dict[str, Any] = {"error": message}
    if retry_after is not None:
        body["retry_after"] = retry_after
    if challenge:
        body["challenge_required"] = True
    return json.dumps(body)


@functools.lru_cache(maxsize=256)
def _page(title: str, message: str, back_url: str | None) -> str:
    back = f'<p><a href="{escape(back_url)}">Back</a></p>\n' if back_url else ""
    return _PAGE.format(title=escape(title), message=escape(message), back=back)


def _app_page(
    code: int,
    message: str,
    retry_after: int | None,
    back_url: str | None,
    challenge: bool,
) -> str | None:
    # Looking a missing template up again on every refusal costs a flood.
    missing: set[int] | None = getattr(
        current_app.extensions.get("lockout"), "missing_templates", None
    )
    if missing is not None and code in missing and not current_app.debug:
        return None
    try:
        return render_template(
            f"lockout/{code}.html",
            error=message,
            retry_after=retry_after,
            wait=wait_in_words(retry_after) if retry_after else None,
            back_url=back_url,
            challenge_required=challenge,
        )
    except TemplateNotFound:
        if missing is not None:
            missing.add(code)
        return None


def add_rate_limit_headers(response: Response) -> Response:
    """After-request hook: ``RateLimit-*`` on limited routes. On a 429,
    ``RateLimit-Reset`` is the ``Retry-After`` itself."""
    result: RateLimitResult | None = request_state().get("rate_limit")
    if result is None or not result.limit:  # no allowance of the client's own
        return response
    state = current_app.extensions.get("lockout")
    if state is None or not state.settings.headers_enabled:
        return response
    if response.status_code == 429 and result.allowed:
        # A locked key's refusal: the allowance is not used up, and a
        # Reset other than Retry-After would contradict it.
        return response
    headers = response.headers
    headers["RateLimit-Limit"] = str(result.limit)
    retry = headers.get("Retry-After") if not result.allowed else None
    if retry is not None:
        headers["RateLimit-Remaining"] = "0"
        headers["RateLimit-Reset"] = retry
    else:
        headers["RateLimit-Remaining"] = str(result.remaining)
        headers["RateLimit-Reset"] = str(
            max(0, math.ceil(round(result.reset_after, 3)))
        )
    return response
