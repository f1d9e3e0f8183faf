"""The real client address, taken from proxy headers only when they are trusted.

Nothing in a header counts unless the peer (``REMOTE_ADDR``) is a trusted
proxy. Then the one configured header is walked from the right, skipping
trusted hops; the first untrusted address is the client. An entry that does
not parse ends the walk at the last trusted hop, so garbage can only make the
answer a proxy, never an address the attacker chose.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Sequence

from flask import Request, current_app, g, has_app_context
from flask import request as current_request

from .config import Network

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Header bytes and entries read at most, from the right; a proxy chain is
#: never this long, and the bound keeps a hostile 64 KiB header cheap.
MAX_HEADER_BYTES = 4096
MAX_HOPS = 32

#: The ``ip`` key of a request with no peer address (a unix socket).
UNKNOWN_PEER = "unknown"

_FORWARDED_FOR = re.compile(r'(?:^|;)\s*for\s*=\s*("[^"]*"|[^;,\s]*)', re.IGNORECASE)
_ASCII_ADDRESS = re.compile(r"^[0-9A-Fa-f:.\[\]%A-Za-z_\-]+$")


@functools.lru_cache(maxsize=4096)
def parse_address(text: str) -> IPAddress | None:
    """Parse one address as proxies write it, or None.

    Accepts ``1.2.3.4``, ``1.2.3.4:5678``, ``2001:db8::1``, ``[2001:db8::1]:443``
    and zone ids (``fe80::1%eth0``, dropped). IPv4-mapped IPv6 becomes IPv4.
    """
    # Only blanks are trimmed: a control character makes the entry invalid.
    text = text.strip(" \t").strip('"').strip(" \t")
    if not text or len(text) > 64 or not _ASCII_ADDRESS.match(text):
        return None
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not re.fullmatch(r":\d{1,5}", rest)):
            return None
        text = host
    elif text.count(":") == 1:  # IPv4 with a port
        text, _, port = text.partition(":")
        if not port.isdigit():
            return None
    text = text.split("%", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def header_entries(header: str, values: Sequence[str]) -> list[str]:
    """The entries of ``header``, rightmost last, at most ``MAX_HOPS``."""
    joined = ",".join(values)[-MAX_HEADER_BYTES:]
    if header == "Forwarded":
        entries = []
        for element in joined.split(","):
            match = _FORWARDED_FOR.search(element)
            # An element without for= cannot name a hop: keep it unparseable.
            entries.append(match.group(1) if match else "")
        return entries[-MAX_HOPS:]
    return joined.split(",")[-MAX_HOPS:]


def resolve(
    remote_addr: str | None,
    header: str,
    values: Sequence[str],
    trusted: Sequence[Network] | int,
) -> str:
    """The client address for a peer and its forwarding header values."""
    peer = parse_address(remote_addr) if remote_addr else None
    if isinstance(trusted, int):
        return _resolve_hops(peer, remote_addr, header, values, trusted)
    if not trusted:
        return str(peer) if peer else remote_addr or UNKNOWN_PEER

    def is_trusted(address: IPAddress) -> bool:
        return any(address in network for network in trusted)

    # No peer address means a unix socket: only a local proxy can be there.
    if peer is not None and not is_trusted(peer):
        return str(peer)
    client: IPAddress | None = peer
    for entry in reversed(header_entries(header, values)):
        address = parse_address(entry)
        if address is None:
            break
        client = address
        if not is_trusted(address):
            break
    return str(client) if client else UNKNOWN_PEER


def _resolve_hops(
    peer: IPAddress | None,
    remote_addr: str | None,
    header: str,
    values: Sequence[str],
    hops: int,
) -> str:
    client = str(peer) if peer else remote_addr or UNKNOWN_PEER
    if hops <= 0:
        return client
    entries = header_entries(header, values)
    for entry in list(reversed(entries))[:hops]:
        address = parse_address(entry)
        if address is None:
            break
        client = str(address)
    return client


def get_client_ip(request: Request | None = None) -> str:
    """The client's full address for ``request`` (default: the current one).

    Uses ``LOCKOUT_TRUSTED_PROXIES`` and ``LOCKOUT_TRUSTED_HEADER`` of the
    current app; without Flask-Lockout set up, the peer address.

    >>> from flask import Flask
    >>> from flask_lockout import Lockout
    >>> app = Flask(__name__)
    >>> app.config["LOCKOUT_TRUSTED_PROXIES"] = ["10.0.0.0/8"]
    >>> _ = Lockout(app)
    >>> with app.test_request_context(
    ...     headers={"X-Forwarded-For": "6.6.6.6, 203.0.113.9"},
    ...     environ_base={"REMOTE_ADDR": "10.0.0.2"},
    ... ):
    ...     get_client_ip()
    '203.0.113.9'
    """
    req = request if request is not None else current_request
    state = current_app.extensions.get("lockout") if has_app_context() else None
    settings = getattr(state, "settings", None)
    if settings is None:
        return resolve(req.remote_addr, "X-Forwarded-For", (), ())
    trusted = settings.trusted_proxies
    if not trusted:  # no proxy is trusted: no header is worth reading
        return resolve(req.remote_addr, "", (), ())
    header = settings.trusted_header
    return resolve(req.remote_addr, header, req.headers.getlist(header), trusted)


def ip_key(address: str, ipv6_prefix: int) -> str:
    """IPv4 addresses as they are; IPv6 ones as their ``/ipv6_prefix`` network,
    since one host usually holds a whole /64."""
    parsed = parse_address(address)
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{parsed}/{ipv6_prefix}", strict=False))
    return address


def current_client_ip() -> str:
    """The current request's client address, resolved once per request."""
    address = g.get("_lockout_client_ip")
    if address is None:
        address = g._lockout_client_ip = get_client_ip()
    return str(address)


def resolve_client_ip() -> None:
    """Before-request hook: resolve the client address once per request."""
    current_client_ip()
