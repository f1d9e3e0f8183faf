"""Opaque single-use tokens: store only their hash, consume them atomically."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from .storage.base import TokenStorage

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def hash_opaque_token(plaintext: str) -> str:
    """The SHA-256 hex digest under which a token is stored.

    >>> hash_opaque_token("abc")
    'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'
    """
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def generate_opaque_token(nbytes: int = 32) -> tuple[str, str]:
    """A new token: ``(plaintext, sha256_hex)``.

    Send the plaintext (in a link, an email); store only the hash.

    >>> plaintext, token_hash = generate_opaque_token()
    >>> verify_opaque_token(plaintext, token_hash)
    True
    """
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 16:
        raise ValueError("nbytes must be a whole number of at least 16.")
    plaintext = secrets.token_urlsafe(nbytes)
    return plaintext, hash_opaque_token(plaintext)


def verify_opaque_token(plaintext: object, token_hash: object) -> bool:
    """True when ``plaintext`` hashes to ``token_hash``, compared in constant time.

    Anything malformed (wrong types, non-ASCII, a hash that is not 64
    lowercase hex digits) gives False; it never raises.

    >>> verify_opaque_token("abc", hash_opaque_token("abc"))
    True
    >>> verify_opaque_token(None, "not a hash")
    False
    """
    if not isinstance(plaintext, str) or not isinstance(token_hash, str):
        return False
    if not plaintext or len(plaintext) > 1024 or not plaintext.isascii():
        return False
    if not _SHA256_HEX.match(token_hash):
        return False
    return hmac.compare_digest(hash_opaque_token(plaintext), token_hash)


def issue_opaque_token(
    storage: TokenStorage, subject: str, ttl_seconds: float, *, nbytes: int = 32
) -> str:
    """Store a new single-use token for ``subject`` (a user id, say) and
    return its plaintext. Only the hash is stored, with a TTL.

    >>> from flask_lockout import MemoryStorage
    >>> storage = MemoryStorage()
    >>> token = issue_opaque_token(storage, "user-42", ttl_seconds=900)
    >>> consume_opaque_token(storage, token)
    'user-42'
    """
    if not ttl_seconds > 0:
        raise ValueError("ttl_seconds must be greater than 0.")
    plaintext, token_hash = generate_opaque_token(nbytes)
    storage.token_put(token_hash, subject, ttl_seconds)
    return plaintext


def consume_opaque_token(storage: TokenStorage, plaintext: object) -> str | None:
    """Use a token once: its subject, or None when unknown, expired, malformed
    or already used. Of many concurrent consumers exactly one wins.

    >>> from flask_lockout import MemoryStorage
    >>> storage = MemoryStorage()
    >>> token = issue_opaque_token(storage, "user-42", ttl_seconds=900)
    >>> consume_opaque_token(storage, token), consume_opaque_token(storage, token)
    ('user-42', None)
    """
    if (
        not isinstance(plaintext, str)
        or not plaintext.isascii()
        or len(plaintext) > 1024
    ):
        return None
    return storage.token_take(hash_opaque_token(plaintext))
