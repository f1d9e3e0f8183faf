"""Key specs: what a request is counted by, and its logical key.

A logical key is ``<scope>:<spec name>:<value>``, for example
``login:email:alice@example.com`` or ``login:ip:203.0.113.7``. It is built
and parsed here and nowhere else.
"""

from __future__ import annotations

import functools
import hashlib
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import flask
from flask import Request

from .client_ip import current_client_ip, ip_key
from .errors import MissingKeyValue
from .request_state import request_state

KeySpec = str | Callable[[], str]

_SOURCES = ("form", "json", "args", "header", "view_arg")

#: Values longer than this are replaced by their hash in logical keys, so a
#: huge field costs neither storage nor log space.
MAX_VALUE_LENGTH = 256
#: A body or query field longer than this (or four times this once
#: decomposed) is refused (400) before the view: no account is named like
#: that, an app that strips the padding off would otherwise meet a fresh
#: bucket for every length of padding, and folding megabytes would cost the
#: server its time. Headers and the app's own values are hashed instead.
MAX_TYPED_LENGTH = 1024
#: Sources an attacker types freely: the body and the query string.
_TYPED = ("form", "json", "args")
#: Different copies of one field a request may give (the body's and the
#: query string's); it counts on each, so each copy is a failure on one
#: more account: more are refused.
MAX_COPIES = 2

# Marks (accents), format characters (zero-width joiners and spaces, bidi
# controls), controls, private use, unassigned and separators: nothing an
# app could be sure to tell apart.
_DROPPED = frozenset({"Mn", "Me", "Cf", "Cc", "Co", "Cs", "Cn", "Zs", "Zl", "Zp"})

# Latin letters with no decomposition that lookups still read as plain ones
# (unaccent, accent-insensitive collations, SQL UPPER(), transliteration).
_LATIN = str.maketrans(
    {
        "ł": "l",
        "đ": "d",
        "ð": "d",
        "ø": "o",
        "ı": "i",
        "ħ": "h",
        "ŧ": "t",
        "ŋ": "n",
        "ĸ": "k",
        "ſ": "s",
        "ɨ": "i",
        "ƀ": "b",
        "ƶ": "z",
        "æ": "ae",
        "œ": "oe",
        "þ": "th",
    }
)


class KeyValue(NamedTuple):
    """One key of a request: the logical key, and the exact spelling typed
    for it (hashed; empty for ``ip`` and other keys no success forgives)."""

    spec: ParsedSpec
    key: str
    spelling: str


@dataclass(frozen=True)
class ParsedSpec:
    """One key spec, checked at decoration time."""

    #: The name in logical keys and in signals' ``key_type``: ``ip``,
    #: ``email`` for ``form:email``, a callable's ``__name__``.
    name: str
    source: str
    field: str = ""
    func: Callable[[], str] | None = None

    def __post_init__(self) -> None:
        # Hashed now: an unhashable callable fails at decoration, not on
        # every request (the read cache below keys on the spec).
        hash(self)

    @property
    def account_like(self) -> bool:
        """True for everything but ``ip``: a success can forgive these keys."""
        return self.source != "ip"

    def read(self, scope: str, req: Request) -> list[KeyValue]:
        """This spec's keys for ``req``: one, or two when the account folds
        two ways (see :func:`folds`).

        :raises MissingKeyValue: when the field is missing, empty once
            folded, too long, or given in more than MAX_COPIES ways.
        """
        # Stacked decorators read the same specs: fold and hash once a request.
        reads: dict[tuple[ParsedSpec, str], list[KeyValue]] = request_state(
            req
        ).setdefault("reads", {})
        found = reads.get((self, scope))
        if found is None:
            found = reads[self, scope] = self._values(scope, req)
        return found

    def _values(self, scope: str, req: Request) -> list[KeyValue]:
        if self.source == "ip":
            return [KeyValue(self, logical_key(scope, "ip", client_ip_key(req)), "")]
        field = self.field or self.name
        texts = self._texts(req)
        if len(texts) > MAX_COPIES:
            raise MissingKeyValue(
                f"The request gives {field!r} more than {MAX_COPIES} times."
            )
        values: list[str] = []
        for text in texts:
            for value in self._folded(text, field):
                if value not in values:
                    values.append(value)
        if not values:  # absent, blank, or invisible characters only
            raise MissingKeyValue(f"The request has no {field!r}.")
        # One account typed: a success may forgive its spelling. With copies
        # that differ nobody knows which one the view checked: none is.
        typed = spelling(texts[0]) if len(texts) == 1 else ""
        return [
            KeyValue(self, logical_key(scope, self.name, value), typed)
            for value in values
        ]

    def _texts(self, request: Request) -> list[str]:
        """Every copy of the value the request gives, blank ones left out.

        A view may read a field from the form, the query string
        (``request.values`` takes its copy first) or a JSON body, and the
        first copy or the last: the attempt counts on each copy, so that
        none of them is a fresh bucket while the view checks another."""
        if self.func is not None:
            found: list[Any] = [self.func()]
        else:
            if self.source in ("form", "args"):
                found = request.form.getlist(self.field)
                # Parsing an empty query string, or the content type of a
                # body that can't be JSON, cost a few µs a request: skipped.
                environ = request.environ
                if environ.get("QUERY_STRING"):
                    found += request.args.getlist(self.field)
                if self.source == "form" and _has_other_body(environ, request):
                    # A view may read it with get_json(force=True): a copy
                    # in the query string must not stand in for it.
                    found.append(self._body_value(request))
                elif "json" in environ.get("CONTENT_TYPE", "").lower() and (
                    request.is_json  # a view may read the JSON body instead
                ):
                    found.append(self._json_value(request.get_json(silent=True)))
            elif self.source == "header":
                found = [request.headers.get(self.field)]
            elif self.source == "view_arg":
                found = [(request.view_args or {}).get(self.field)]
            else:
                found = [self._json_value(request.get_json(silent=True))]
        texts: list[str] = []
        for item in found:
            text = "" if item is None else str(item)
            if text.strip() and text not in texts:
                texts.append(text)
        return texts

    def _body_value(self, request: Request) -> Any:
        """The field of a body that is no form: a JSON object's, whatever
        its content type says.

        :raises MissingKeyValue: for a body that is not a JSON object, or
            whose field is no string or number.
        """
        # Cached, and parsed by the app's own JSON provider, as the view's
        # get_json(force=True) will parse it.
        if not request.get_data(cache=True).strip():
            return None
        body = request.get_json(force=True, silent=True)
        if not isinstance(body, dict):
            raise MissingKeyValue(
                f"The request's body is neither a form nor a JSON object with"
                f" {self.field!r}."
            )
        value = self._json_value(body)
        if value is None and body.get(self.field) is not None:
            raise MissingKeyValue(
                f"The request's {self.field!r} is not a string or a number."
            )
        return value

    def _json_value(self, body: Any) -> Any:
        value = body.get(self.field) if isinstance(body, dict) else None
        return (
            value
            if isinstance(value, str | int) and not isinstance(value, bool)
            else None
        )

    def _folded(self, text: str, field: str) -> list[str]:
        """``text`` folded (:func:`folds`), bounded in cost."""
        decomposed = None
        too_long = len(text) > MAX_TYPED_LENGTH
        if not too_long and not text.isascii():
            # Decomposed once: for the bound, then for the folding.
            decomposed = unicodedata.normalize("NFKD", text)
            too_long = len(decomposed) > 4 * MAX_TYPED_LENGTH
        if too_long:
            if self.source in _TYPED:
                raise MissingKeyValue(
                    f"The request's {field!r} is longer than any account name."
                )
            # A header's or the app's own value is a token, not a name.
            raw = text.encode("utf-8", "surrogatepass")
            return ["sha256:" + hashlib.sha256(raw).hexdigest()]
        found = (
            folds(text) if decomposed is None else _folds_decomposed(text, decomposed)
        )
        return [value for value in found if value]


#: Bodies that ``request.form`` reads.
_FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


def _has_other_body(environ: dict[str, Any], request: Request) -> bool:
    """Whether the request carries a body that ``request.form`` does not read
    (any other content type, or none)."""
    length = environ.get("CONTENT_LENGTH")
    if (not length or length == "0") and not environ.get("wsgi.input_terminated"):
        return False  # no body a view could read
    return request.mimetype not in _FORM_TYPES


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


def check_scope(scope: str | None) -> str | None:
    """A scope is the first part of a logical key, so it holds no ``:``."""
    if scope is not None and (not isinstance(scope, str) or not scope or ":" in scope):
        raise ValueError(
            f"scope must be a non-empty string without ':', not {scope!r}."
        )
    return scope


def named_scope(scope: object) -> str:
    """A scope an operator names (a surge's): as :func:`check_scope` wants
    it, given, and of a sane length.

    :raises ValueError: saying what a scope looks like.
    """
    if not isinstance(scope, str) or not scope or len(scope) > 200:
        raise ValueError(f"scope must be a scope name such as 'login', not {scope!r}.")
    check_scope(scope)
    return scope


def current_scope(scope: str | None, request: Request | None = None) -> str:
    """The scope given, else the endpoint of ``request`` (the current one by
    default; ``:`` replaced, see check_scope)."""
    if scope:
        return scope
    if request is None:
        request = flask.request
    endpoint: str = request.endpoint or request.path
    return endpoint.replace(":", ".")


def fold(value: str) -> str:
    """Fold an account name so that every spelling an app might treat as one
    account shares one bucket: case, width, accents, invisible characters
    and spaces do not count.

    Failures are counted on this folding, which merges at least as much as
    an app's lookup would, whether exact, case-insensitive or
    accent-insensitive; a success forgives only its own exact spelling.

    >>> fold(" Alice@X.com "), fold("ａｌｉｃｅ"), fold("alice\\u200b"), fold("Alicé")
    ('alice@x.com', 'alice', 'alice', 'alice')
    >>> fold("Ørjan"), fold("alice中"), fold("Алиса")
    ('orjan', 'alice', 'алиса')
    """
    return folds(value)[0]


def folds(value: str) -> list[str]:
    """Every folding of ``value`` to count on: one, or two when lookups that
    keep only ASCII (``"łalice"`` and ``"aliceß"`` are ``"alice"``) and those
    that transliterate (``"lalice"``, ``"alicess"``) disagree. A request
    counts on each.

    >>> folds("łalice"), folds("aliceß"), folds("alice")
    (['lalice', 'alice'], ['alicess', 'alice'], ['alice'])
    """
    if value.isascii() and value.isprintable() and len(value) <= MAX_VALUE_LENGTH:
        # The common case, quickly: in ASCII only case and spaces fold.
        return [value.replace(" ", "").lower()]
    return _folds_decomposed(value, unicodedata.normalize("NFKD", value))


def _folds_decomposed(value: str, decomposed: str) -> list[str]:
    """:func:`folds` past its quick case, given ``value`` decomposed (NFKD),
    which a caller bounding the cost has already made."""
    # Always folded before any digest: padding an app strips off must never
    # make a new key (requests longer than MAX_TYPED_LENGTH are refused).
    text = unicodedata.normalize("NFKD", decomposed.casefold())
    text = "".join(ch for ch in text if unicodedata.category(ch) not in _DROPPED)
    base = unicodedata.normalize("NFKC", text)
    # What an ASCII-only lookup (encode("ascii", "ignore")) reads, from the
    # value as typed: casefolding first would turn "ß" into "ss".
    ascii_only = "".join(
        ch for ch in decomposed if ch.isascii() and ch.isprintable() and ch != " "
    ).lower()
    transliterated = "".join(_latin_base(ch) for ch in base)
    found = []
    for variant in (transliterated, ascii_only):
        # A name wholly in another script stays as it is.
        if not variant or not any(c.isascii() and c.isalnum() for c in variant):
            variant = base
        elif not variant.isascii():
            variant = "".join(ch for ch in variant if ch.isascii())
        if len(variant) > MAX_VALUE_LENGTH:
            variant = "sha256:" + hashlib.sha256(variant.encode()).hexdigest()
        if variant not in found:
            found.append(variant)
    return found


#: Words of a Latin letter's Unicode name that say how it looks, not which
#: letter it is: "LATIN SMALL LETTER DOTLESS I" is an i.
_SHAPE_WORDS = frozenset(
    {"SMALL", "CAPITAL", "DOTLESS", "TURNED", "REVERSED", "SCRIPT", "SHARP"}
    | {"CLOSED", "OPEN", "LONG", "BARRED", "INVERTED", "STRETCHED", "MIDDLE"}
)


@functools.lru_cache(maxsize=4096)
def _latin_base(ch: str) -> str:
    """The plain letters a lookup that transliterates (Postgres ``unaccent``)
    reads for ``ch``: ``ɫ`` and ``ł`` are ``l``, ``æ`` is ``ae``; ``ch``
    itself when it is no Latin letter."""
    if ch.isascii():
        return ch
    mapped = ch.translate(_LATIN)
    if mapped != ch:
        return mapped
    words = unicodedata.name(ch, "").split()
    if not words or words[0] != "LATIN":
        return ch
    for marker in ("LETTER", "LIGATURE"):
        if marker in words:
            for word in words[words.index(marker) + 1 :]:
                if word in _SHAPE_WORDS:
                    continue
                if len(word) <= 2 and word.isascii() and word.isalpha():
                    return word.lower()
                break
    return ch


def spelling(value: str) -> str:
    """A short digest of the exact value typed. One exact string names one
    account under any lookup an app may use, so a success forgives only the
    failures typed with its own spelling."""
    raw = value.encode("utf-8", "surrogatepass")
    return hashlib.sha256(raw).hexdigest()[:16]


def client_ip_key(req: Request | None = None) -> str:
    """The client address of ``req`` (the current request by default) as the
    ``ip`` spec counts it: IPv6 by network."""
    scope = request_state(req)
    cached = scope.get("ip_key")
    if cached is None:
        state = flask.current_app.extensions.get("lockout")
        prefix = state.settings.ipv6_prefix if state is not None else 64
        cached = scope["ip_key"] = ip_key(current_client_ip(req), prefix)
    return str(cached)


def logical_key(scope: str, key_type: str, value: str) -> str:
    """``<scope>:<key_type>:<value>``."""
    return f"{scope}:{key_type}:{value}"


def split_key(key: str) -> tuple[str, str, str] | None:
    """``(scope, key_type, value)`` of a logical key, or None when it is not one.
    The value may hold ``:`` (IPv6); scope and type never do."""
    scope, _, rest = key.partition(":")
    key_type, _, value = rest.partition(":")
    if not scope or not key_type or not value.strip():
        return None
    return scope, key_type, value


def canonical_key(text: str) -> str | None:
    """A logical key typed by a person (the CLI, the dashboard), with its
    value folded as requests fold it; None when it is not a logical key."""
    parts = split_key(text)
    if parts is None:
        return None
    scope, key_type, value = parts
    return logical_key(scope, key_type, value if key_type == "ip" else fold(value))
