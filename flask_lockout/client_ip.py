"""The real client address, taken from proxy headers only when they are trusted.

Nothing in a header counts unless the peer (``REMOTE_ADDR``) is a trusted
proxy. Then the one configured header is walked from the right, skipping
trusted hops; the first untrusted address is the client. An entry that does
not parse ends the walk at the last trusted hop, so garbage can only make the
answer a proxy, never an address the attacker chose. ``Forwarded`` is split
as RFC 7239 says, quoted strings included, and from the right.

A local peer that is not trusted but sends forwarding headers is a proxy
nobody configured: that is warned about once per process.
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
import logging
import re
import threading
from collections.abc import Iterator, Sequence

import flask
from flask import Request, has_app_context, has_request_context

from .config import Network
from .request_state import request_state

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Header bytes and entries read at most, from the right; a proxy chain is
#: never this long, and the bound keeps a hostile 64 KiB header cheap.
MAX_HEADER_BYTES = 4096
MAX_HOPS = 32

#: The ``ip`` key of a request with no peer address (a unix socket).
UNKNOWN_PEER = "unknown"

#: Headers whose presence shows that a proxy stands in front of the app.
FORWARDING_HEADERS = ("X-Forwarded-For", "X-Real-IP", "Forwarded")

logger = logging.getLogger("flask_lockout")

# Set once the unconfigured-proxy warning is given; the check is then skipped.
# The lock only keeps two racing threads from both logging it.
_proxy_warning_given = False
_proxy_warning_lock = threading.Lock()

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
#: One optional ``name=value`` pair of a ``Forwarded`` element (RFC 7239),
#: value a token or a quoted string; blanks around it are tolerated.
_QUOTED = r'"((?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[^\x00-\x08\x0a-\x1f\x7f])*)"'
_FORWARDED_PAIR = re.compile(
    rf"[ \t]*(?:({_TOKEN})[ \t]*=[ \t]*(?:({_TOKEN})|{_QUOTED}))?[ \t]*"
)
_QUOTED_PAIR = re.compile(r"\\(.)")
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


def entries_from_right(header: str, values: Sequence[str]) -> Iterator[str]:
    """The address entries of ``header``, rightmost first, at most ``MAX_HOPS``.

    For ``Forwarded`` each entry is the ``for=`` value of one element, or ""
    for an element that is malformed or has none (so it ends the walk).
    """
    if header == "Forwarded":
        return map(_forwarded_for, _forwarded_elements(values))
    joined = ",".join(values)
    entries = joined[-MAX_HEADER_BYTES:].split(",")
    if len(joined) > MAX_HEADER_BYTES:
        entries[0] = ""  # cut mid-entry: "10.1.1.1" may read as "0.1.1.1"
    return reversed(entries[-MAX_HOPS:])


def _forwarded_elements(values: Sequence[str]) -> list[str]:
    """The elements of ``Forwarded`` lines, rightmost first.

    Scanned from the right, so the elements our proxies appended are always
    split correctly, whatever a client put to their left (an unclosed quote,
    say). Only the rightmost ``MAX_HEADER_BYTES`` are read; an element they
    cut comes out as "" and ends the list.
    """
    elements: list[str] = []
    budget = MAX_HEADER_BYTES
    for line in reversed(values):
        start = max(0, len(line) - budget)
        budget -= len(line) - start
        if not _split_from_right(line, start, elements) or budget <= 0:
            break
    return elements[:MAX_HOPS]


def _split_from_right(line: str, start: int, out: list[str]) -> bool:
    """Append the comma-separated elements of ``line[start:]`` to ``out``,
    rightmost first, honouring quoted strings and their backslash escapes.

    Returns whether the scan may go on with the line to the left: False after
    appending "" for an element that is not whole (cut at ``start`` or inside
    an unclosed quote), or once ``MAX_HOPS`` elements are out.
    """
    end = len(line)
    # The nearest comma and quote left of the scan; every character is
    # searched at most once per kind, so hostile input stays linear.
    comma = line.rfind(",", start, end)
    quote = line.rfind('"', start, end)
    while True:
        if quote > comma:
            # ``quote`` closes a quoted string: find the quote that opens it.
            while True:
                opening = line.rfind('"', start, quote)
                run = opening
                while run > start and line[run - 1] == "\\":
                    run -= 1
                if opening < 0 or (run == start and start > 0):
                    out.append("")  # unclosed, or the cut hides an escape
                    return False
                if (opening - run) % 2 == 0:
                    break
                quote = opening  # an escaped quote (odd backslashes)
            quote = line.rfind('"', start, opening)
            if comma > opening:  # that comma was inside the quotes
                comma = line.rfind(",", start, opening)
            continue
        if comma < 0:
            if start > 0:
                out.append("")  # the cut may have taken part of it
                return False
            out.append(line[:end])
            return len(out) < MAX_HOPS
        out.append(line[comma + 1 : end])
        if len(out) >= MAX_HOPS:
            return False
        end = comma
        comma = line.rfind(",", start, end)


def _forwarded_for(element: str) -> str:
    """The ``for=`` value of one ``Forwarded`` element, or "".

    The element must be ``pair *(";" pair)`` with token or quoted-string
    values; anything else, or a second ``for=``, gives "".
    """
    found: str | None = None
    position = 0
    while True:
        match = _FORWARDED_PAIR.match(element, position)
        if match is None:
            return ""
        name, token, quoted = match.groups()
        if name is not None and name.lower() == "for":
            if found is not None:
                return ""  # two for= in one element: which hop is it?
            found = token if token is not None else _QUOTED_PAIR.sub(r"\1", quoted)
        position = match.end()
        if position == len(element):
            return found or ""
        if element[position] != ";":
            return ""
        position += 1


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
    if not trusted:  # no proxy: the peer
        return str(peer) if peer else remote_addr or UNKNOWN_PEER

    def is_trusted(address: IPAddress) -> bool:
        return any(address in network for network in trusted)

    # No peer address means a unix socket: only a local proxy can be there.
    if peer is not None and not is_trusted(peer):
        return str(peer)
    client: IPAddress | None = peer
    for entry in entries_from_right(header, values):
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
    for entry in itertools.islice(entries_from_right(header, values), hops):
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
    req = request if request is not None else flask.request
    state = flask.current_app.extensions.get("lockout") if has_app_context() else None
    settings = getattr(state, "settings", None)
    if settings is None:
        return resolve(req.remote_addr, "X-Forwarded-For", (), ())
    trusted = settings.trusted_proxies
    if not _proxy_warning_given:
        _warn_if_proxy_untrusted(req, trusted, settings.trusted_header)
    if not trusted:  # no proxy is trusted: no header is worth reading
        return resolve(req.remote_addr, "", (), ())
    header = settings.trusted_header
    return resolve(req.remote_addr, header, req.headers.getlist(header), trusted)


@functools.lru_cache(maxsize=4096)
def _is_local(remote_addr: str) -> bool:
    """Whether a peer could be a proxy of the app's own: loopback, private,
    or no IP address at all (a unix socket)."""
    peer = parse_address(remote_addr) if remote_addr else None
    return peer is None or peer.is_private or peer.is_loopback


_FORWARDING_VARS = tuple(
    (name, "HTTP_" + name.upper().replace("-", "_")) for name in FORWARDING_HEADERS
)


def _peer_is_trusted(remote_addr: str, trusted: Sequence[Network] | int) -> bool:
    """Whether ``resolve`` reads the forwarding header of this peer."""
    if isinstance(trusted, int):
        return trusted > 0
    peer = parse_address(remote_addr) if remote_addr else None
    if peer is None:  # a unix socket: trusted whenever any proxy is
        return bool(trusted)
    return any(peer in network for network in trusted)


def _warn_if_proxy_untrusted(
    req: Request, trusted: Sequence[Network] | int, trusted_header: str
) -> None:
    """Warn once per process when a local peer that is not trusted sends
    forwarding headers: the sign of a proxy nobody configured."""
    global _proxy_warning_given
    environ = req.environ
    # Cheapest first: most requests carry no forwarding header at all.
    present = [name for name, var in _FORWARDING_VARS if var in environ]
    if not present:
        return
    remote_addr = req.remote_addr or ""
    if not _is_local(remote_addr) or _peer_is_trusted(remote_addr, trusted):
        return
    with _proxy_warning_lock:
        if _proxy_warning_given:
            return
        _proxy_warning_given = True
    peer = parse_address(remote_addr) if remote_addr else None
    if peer is None:  # resolve() trusts such a peer once any network is listed
        source = "a peer without an IP address (a unix socket)"
        networks = "['127.0.0.1/32']"
    else:
        source, networks = str(peer), f"['{ipaddress.ip_network(peer)}']"
    if trusted_header not in present:
        networks += f" and LOCKOUT_TRUSTED_HEADER = '{present[0]}'"
    logger.warning(
        "Requests from %s carry %s but LOCKOUT_TRUSTED_PROXIES does not trust"
        " that peer: every client behind that proxy shares its address, so one"
        " attacker can lock everyone out. If it is your proxy, set"
        " LOCKOUT_TRUSTED_PROXIES = %s (or the proxy's network). This warning"
        " is given once per process.",
        source,
        " and ".join(present),
        networks,
    )


def ip_key(address: str, ipv6_prefix: int) -> str:
    """IPv4 addresses as they are; IPv6 ones as their ``/ipv6_prefix`` network,
    since one host usually holds a whole /64."""
    parsed = parse_address(address)
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{parsed}/{ipv6_prefix}", strict=False))
    return address


def current_client_ip(req: Request | None = None) -> str:
    """The client address of ``req`` (the current request by default),
    resolved once per request."""
    state = request_state(req)
    address = state.get("client_ip")
    if address is None:
        address = state["client_ip"] = get_client_ip(req)
    return str(address)


@functools.lru_cache(maxsize=4096)
def network_of(address: str) -> str:
    """The network a memory store's overflow buckets are partitioned by:
    IPv4 /24, IPv6 /48 (what one holder usually gets); ``address`` itself
    when it is no IP address."""
    parsed = parse_address(address)
    if parsed is None:
        return address
    prefix = 24 if parsed.version == 4 else 48
    return str(ipaddress.ip_network(f"{parsed}/{prefix}", strict=False))


def current_client_network(req: Request | None = None) -> str:
    """The client network (:func:`network_of`) of ``req``, by default the
    current request's, ``""`` outside a request."""
    if req is None and not has_request_context():
        return ""
    return network_of(current_client_ip(req))
