"""Key specs: what a request is counted by, and its logical key.

A logical key is ``<scope>:<spec name>:<value>``, for example
``login:email:alice@example.com`` or ``login:ip:203.0.113.7``.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from flask import current_app, g, request
from werkzeug.exceptions import BadRequest

KeySpec = str | Callable[[], str]

_SOURCES = ("form", "json", "args", "header", "view_arg")

#: Values longer than this are replaced by their hash in logical keys, so a
#: huge field costs neither storage nor log space.
MAX_VALUE_LENGTH = 256


class MissingKeyValue(BadRequest):
    """400: the field a key spec reads is missing or empty.

    >>> MissingKeyValue("The request has no 'email'.").code
    400
    """


@dataclass(frozen=True)
class ParsedSpec:
    """One key spec, checked at decoration time."""

    #: The name in logical keys and in signals' ``key_type``: ``ip``,
    #: ``email`` for ``form:email``, a callable's ``__name__``.
    name: str
    source: str
    field: str = ""
    func: Callable[[], str] | None = None

    @property
    def account_like(self) -> bool:
        """True for everything but ``ip``: a success clears these keys."""
        return self.source != "ip"

    def value(self) -> str:
        """Read and normalise this spec's value from the current request."""
        if self.source == "ip":
            return client_ip_key()
        raw = self._read()
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            raise MissingKeyValue(f"The request has no {self.field or self.name!r}.")
        return normalise(str(raw))

    def _read(self) -> Any:
        if self.func is not None:
            return self.func()
        if self.source == "form":
            return request.form.get(self.field)
        if self.source == "args":
            return request.args.get(self.field)
        if self.source == "header":
            return request.headers.get(self.field)
        if self.source == "view_arg":
            return (request.view_args or {}).get(self.field)
        body = request.get_json(silent=True)
        value = body.get(self.field) if isinstance(body, dict) else None
        return (
            value
            if isinstance(value, str | int) and not isinstance(value, bool)
            else None
        )


def parse_spec(spec: KeySpec) -> ParsedSpec:
    """Check one key spec.

    :raises ValueError: for an unknown source or an empty field name.
    """
    if callable(spec):
        name = getattr(spec, "__name__", "custom")
        return ParsedSpec(
            name if name != "<lambda>" else "custom", "callable", func=spec
        )
    if not isinstance(spec, str):
        raise ValueError(f"A key spec must be a string or a callable, not {spec!r}.")
    if spec == "ip":
        return ParsedSpec("ip", "ip")
    source, _, field = spec.partition(":")
    if source not in _SOURCES or not field.strip() or ":" in field:
        raise ValueError(
            f"Invalid key spec {spec!r}: use 'ip', 'form:<field>', 'json:<field>',"
            " 'args:<name>', 'header:<Name>', 'view_arg:<name>' or a callable."
        )
    field = field.strip()
    name = field.lower() if source == "header" else field
    return ParsedSpec(name, source, field)


def parse_specs(by: KeySpec | Sequence[KeySpec]) -> tuple[ParsedSpec, ...]:
    """One spec or several; at least one."""
    if isinstance(by, str) or callable(by):
        specs: tuple[KeySpec, ...] = (by,)
    elif isinstance(by, list | tuple):
        specs = tuple(by)
    else:
        raise ValueError(f"by= takes a key spec or a sequence of them, not {by!r}.")
    if not specs:
        raise ValueError("At least one key spec is needed in by=.")
    return tuple(parse_spec(spec) for spec in specs)


def normalise(value: str) -> str:
    """Fold account-like values so ``Alice@X.com `` and ``alice@x.com`` meet."""
    folded = unicodedata.normalize("NFKC", value).strip().casefold()
    folded = "".join(ch for ch in folded if ch.isprintable())
    if len(folded) > MAX_VALUE_LENGTH:
        return "sha256:" + hashlib.sha256(folded.encode("utf-8", "replace")).hexdigest()
    return folded


def client_ip_key() -> str:
    """The client address as the ``ip`` spec counts it: IPv6 by network."""
    from .client_ip import current_client_ip, ip_key

    cached = g.get("_lockout_ip_key")
    if cached is None:
        state = current_app.extensions.get("lockout")
        prefix = state.settings.ipv6_prefix if state is not None else 64
        cached = g._lockout_ip_key = ip_key(current_client_ip(), prefix)
    return str(cached)


def logical_key(scope: str, spec: ParsedSpec, value: str) -> str:
    return f"{scope}:{spec.name}:{value}"
