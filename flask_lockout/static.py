"""Hardened static files: security headers on every response under a prefix."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from flask import Blueprint, current_app, request
from flask.blueprints import BlueprintSetupState
from flask.sansio.app import App
from werkzeug.wrappers import Response

#: Headers that stop a served file from being run as a page, sniffed into
#: another type, or embedded by other sites.
DEFAULT_STATIC_SECURITY_HEADERS: Mapping[str, str] = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cross-Origin-Resource-Policy": "same-site",
}


def static_headers(app: App) -> dict[str, str]:
    """The defaults merged with ``LOCKOUT_STATIC_SECURITY_HEADERS``; a value
    of None there removes a default."""
    state = app.extensions.get("lockout")
    settings = getattr(state, "settings", None)
    extra = (
        settings.static_security_headers
        if settings is not None
        else app.config.get("LOCKOUT_STATIC_SECURITY_HEADERS") or {}
    )
    merged: dict[str, str | None] = {**DEFAULT_STATIC_SECURITY_HEADERS, **extra}
    return {name: value for name, value in merged.items() if value is not None}


def _normalise_prefix(prefix: str) -> str:
    return "/" + prefix.strip("/") if prefix.strip("/") else ""


def stamp_under(app: App, prefix: str) -> None:
    """Stamp the headers on every response whose path is under ``prefix``.

    An app-level hook, because a blueprint's own ``after_request`` does not
    run for a 404 that matches no rule.
    """
    prefix = _normalise_prefix(prefix)
    prefixes: set[str] = app.extensions.setdefault("lockout_hardened_prefixes", set())
    if prefix in prefixes:
        return
    prefixes.add(prefix)
    if len(prefixes) == 1:
        app.after_request(_stamp(prefixes))


def _stamp(prefixes: set[str]) -> Callable[[Response], Response]:
    def stamp(response: Response) -> Response:
        path = request.path
        if any(path == p or path.startswith(p + "/") for p in prefixes):
            for name, value in static_headers(current_app).items():
                response.headers[name] = value  # replaces: exactly one of each
        return response

    return stamp


def static_blueprint(name: str, static_folder: str, url_prefix: str) -> Blueprint:
    """A blueprint that serves ``static_folder`` at ``url_prefix`` with the
    hardened headers on every response: 200, HEAD, 206, 304 and 404 alike."""
    prefix = _normalise_prefix(url_prefix)
    if not prefix:
        raise ValueError("url_prefix must not be the site root.")
    blueprint = Blueprint(
        name,
        __name__,
        static_folder=static_folder,
        static_url_path="",
        url_prefix=prefix,
    )

    def harden(state: BlueprintSetupState) -> None:
        stamp_under(state.app, state.url_prefix or prefix)

    blueprint.record(harden)
    return blueprint
