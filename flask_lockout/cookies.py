"""Cookies with secure defaults and the browser's rules enforced.

Werkzeug writes whatever it is given; browsers then silently drop cookies
that break their rules. These helpers refuse such cookies up front.
"""

from __future__ import annotations

import re
from datetime import timedelta

from flask import current_app, has_app_context
from werkzeug.sansio.response import Response

#: Browsers cap a cookie's lifetime at 400 days; longer values are clamped.
MAX_AGE_LIMIT = 400 * 86400
#: Name and value together, in bytes, that every browser keeps.
MAX_COOKIE_BYTES = 4096

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_COOKIE_OCTETS = re.compile(r"^[\x21\x23-\x2B\x2D-\x3A\x3C-\x5B\x5D-\x7E]*$")
_SAMESITE = {"strict": "Strict", "lax": "Lax", "none": "None"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_BAD_PATH = re.compile(r"[;\x00-\x1f\x7f-\x9f]")
#: A host name (a leading dot is allowed and ignored by browsers).
_BAD_DOMAIN = re.compile(r"[^A-Za-z0-9._-]")


def _defaults() -> tuple[bool, bool, str | None]:
    """Secure, HttpOnly and SameSite for a cookie that does not say: the app's
    validated settings, else the secure defaults. Raw ``app.config`` is never
    read: ``bool("false")`` is True."""
    state = current_app.extensions.get("lockout") if has_app_context() else None
    settings = getattr(state, "settings", None)
    if settings is None:
        return True, True, "Lax"
    samesite = settings.cookie_samesite
    return (
        bool(settings.cookie_secure),
        bool(settings.cookie_httponly),
        samesite if isinstance(samesite, str) else None,
    )


def _refusal(char: str) -> str:
    """Why ``char`` cannot appear in a cookie's domain or path."""
    if char == ";":
        return "';', which would inject a cookie attribute"
    if _CONTROL.match(char):
        return f"a control character ({char!r})"
    if char.isspace():
        return f"whitespace ({char!r})"
    if not char.isascii():
        return f"{char!r}, which is not ASCII: give the IDNA (xn--) form"
    if char == ":":
        return "':': a cookie domain carries no port"
    return f"{char!r}, which a host name cannot contain"


def _check_scope(name: str, path: str, domain: str | None) -> None:
    # Werkzeug writes a domain as given, so "x.com; SameSite=None" would add
    # an attribute; a path it percent-encodes, silently changing the cookie.
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"Cookie {name!r}: path must start with '/', not {path!r}.")
    bad = _BAD_PATH.search(path)
    if bad:
        raise ValueError(
            f"Cookie {name!r}: path {path!r} contains {_refusal(bad.group())}."
        )
    if domain is None:
        return
    if not isinstance(domain, str):
        raise ValueError(f"Cookie {name!r}: domain must be a string, not {domain!r}.")
    bad = _BAD_DOMAIN.search(domain)
    if bad:
        raise ValueError(
            f"Cookie {name!r}: domain {domain!r} contains {_refusal(bad.group())};"
            " give a bare host name such as 'example.com'."
        )


def _check(
    name: str,
    value: str,
    secure: bool,
    samesite: str | None,
    path: str,
    domain: str | None,
    partitioned: bool,
) -> str | None:
    if not isinstance(name, str) or not _TOKEN.match(name):
        raise ValueError(
            f"Cookie name {name!r} is not a valid token: use letters, digits and"
            " !#$%&'*+-.^_`|~ only."
        )
    if not isinstance(value, str) or not _COOKIE_OCTETS.match(value):
        raise ValueError(
            f"The value of cookie {name!r} has characters a cookie cannot carry"
            " (spaces, quotes, commas, semicolons, backslashes, controls or"
            " non-ASCII): encode it first, for example with base64.urlsafe_b64encode."
        )
    if len(name.encode()) + len(value.encode()) > MAX_COOKIE_BYTES:
        raise ValueError(
            f"Cookie {name!r} is over {MAX_COOKIE_BYTES} bytes: browsers drop it."
        )
    _check_scope(name, path, domain)
    lowered = name.lower()
    if lowered.startswith(("__secure-", "__host-")) and not secure:
        raise ValueError(
            f"Cookie {name!r}: the __Secure-/__Host- prefix needs secure=True."
        )
    if lowered.startswith("__host-") and (domain is not None or path != "/"):
        raise ValueError(
            f"Cookie {name!r}: a __Host- cookie needs path='/' and no domain."
        )
    if samesite is not None:
        normalised = _SAMESITE.get(str(samesite).lower())
        if normalised is None:
            raise ValueError("samesite must be 'Strict', 'Lax', 'None' or None.")
        samesite = normalised
    if samesite == "None" and not secure:
        raise ValueError(f"Cookie {name!r}: SameSite=None needs secure=True.")
    if partitioned and not secure:
        raise ValueError(f"Cookie {name!r}: Partitioned needs secure=True.")
    return samesite


def set_cookie(
    response: Response,
    name: str,
    value: str,
    *,
    max_age: int | timedelta | None = None,
    secure: bool | None = None,
    http_only: bool | None = None,
    samesite: str | None = None,
    path: str = "/",
    domain: str | None = None,
    partitioned: bool = False,
) -> None:
    """Set a cookie; unset flags come from the app's ``LOCKOUT_COOKIE_SECURE``,
    ``LOCKOUT_COOKIE_HTTPONLY`` and ``LOCKOUT_COOKIE_SAMESITE`` as
    ``init_app`` read them (Secure, HttpOnly, Lax without Flask-Lockout).

    :raises ValueError: for a cookie a browser would reject or drop, or a
        ``domain`` or ``path`` that would inject attributes, saying what to
        change. A ``max_age`` over 400 days is clamped to 400 days.

    >>> from werkzeug.wrappers import Response
    >>> response = Response()
    >>> set_cookie(response, "sid", "abc")
    >>> response.headers["Set-Cookie"]
    'sid=abc; Secure; HttpOnly; Path=/; SameSite=Lax'
    """
    default_secure, default_http_only, default_samesite = _defaults()
    secure = default_secure if secure is None else secure
    http_only = default_http_only if http_only is None else http_only
    samesite = default_samesite if samesite is None else samesite
    samesite = _check(name, value, secure, samesite, path, domain, partitioned)
    if isinstance(max_age, timedelta):
        max_age = int(max_age.total_seconds())
    if max_age is not None:
        if isinstance(max_age, bool) or not isinstance(max_age, int) or max_age < 0:
            raise ValueError(
                f"max_age must be a whole number of seconds >= 0, not {max_age!r}."
            )
        max_age = min(max_age, MAX_AGE_LIMIT)
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=path,
        domain=domain,
        secure=secure,
        httponly=http_only,
        samesite=samesite,
        partitioned=partitioned,
    )


def clear_cookie(
    response: Response, name: str, path: str = "/", domain: str | None = None
) -> None:
    """Expire a cookie, repeating the path, domain and Secure flag it was set
    with so that the browser really drops it.

    :raises ValueError: for a name, ``domain`` or ``path`` that
        :func:`set_cookie` refuses.

    >>> from werkzeug.wrappers import Response
    >>> response = Response()
    >>> clear_cookie(response, "sid")
    >>> "Max-Age=0; Secure" in response.headers["Set-Cookie"]
    True
    """
    default_secure, http_only, default_samesite = _defaults()
    secure = default_secure or name.lower().startswith(("__secure-", "__host-"))
    samesite = _check(name, "", secure, default_samesite, path, domain, False)
    response.delete_cookie(
        name,
        path=path,
        domain=domain,
        secure=secure,
        httponly=http_only,
        samesite=samesite,
    )
