from __future__ import annotations

import ipaddress
import logging
from typing import Any

import pytest
from flask import Flask
from hypothesis import given, settings
from hypothesis import strategies as st

from flask_lockout import Lockout, client_ip, get_client_ip
from flask_lockout.client_ip import (
    MAX_HEADER_BYTES,
    entries_from_right,
    ip_key,
    parse_address,
    resolve,
)

PROXIES = (
    ipaddress.ip_network("10.0.0.0/8"),
    ipaddress.ip_network("2001:db8:ffff::/48"),
)
XFF = "X-Forwarded-For"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("203.0.113.9", "203.0.113.9"),
        (" 203.0.113.9 ", "203.0.113.9"),
        ("203.0.113.9:4711", "203.0.113.9"),
        ("2001:DB8::0:1", "2001:db8::1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("::ffff:203.0.113.9", "203.0.113.9"),
        ('"[2001:db8::17]:4711"', "2001:db8::17"),
    ],
)
def test_parse_address(text: str, expected: str) -> None:
    assert str(parse_address(text)) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "unknown",
        "_hidden",
        "1.2.3.4\r\n",
        "1.2.3.4\x00",
        "01.2.3.4",  # leading zeros
        "１.２.３.４",  # full-width digits
        "16909060",  # integer form
        "0x01020304",
        "1.2.3",
        "1.2.3.4.5",
        "256.1.1.1",
        "[2001:db8::1",
        "[2001:db8::1]:port",
        "1.2.3.4:http",
        "ünïcode",
        "1" * 5000,
    ],
)
def test_parse_address_rejects(text: str) -> None:
    assert parse_address(text) is None


def test_untrusted_peer_headers_are_ignored() -> None:
    assert resolve("203.0.113.9", XFF, ["6.6.6.6"], PROXIES) == "203.0.113.9"
    assert resolve("203.0.113.9", XFF, ["6.6.6.6"], ()) == "203.0.113.9"
    assert resolve("203.0.113.9", XFF, ["6.6.6.6"], 0) == "203.0.113.9"


def test_spoofed_leftmost_entries_never_win() -> None:
    # The attacker sent "X-Forwarded-For: 6.6.6.6"; the proxy appended them.
    assert resolve("10.0.0.1", XFF, ["6.6.6.6, 203.0.113.9"], PROXIES) == "203.0.113.9"
    chain = ["6.6.6.6, 203.0.113.9, 10.0.0.2"]
    assert resolve("10.0.0.1", XFF, chain, PROXIES) == "203.0.113.9"


def test_header_lines_are_joined() -> None:
    assert (
        resolve("10.0.0.1", XFF, ["6.6.6.6", "203.0.113.9"], PROXIES) == "203.0.113.9"
    )


@pytest.mark.parametrize(
    "garbage",
    ["garbage", "", "1.2.3.4\r\n", "01.2.3.4", "unknown", "１.2.3.4", "16909060"],
)
def test_unparseable_entry_stops_at_the_last_trusted_hop(garbage: str) -> None:
    chain = [f"6.6.6.6, {garbage}, 10.0.0.2"]
    assert resolve("10.0.0.1", XFF, chain, PROXIES) == "10.0.0.2"
    assert resolve("10.0.0.1", XFF, [garbage], PROXIES) == "10.0.0.1"


def test_all_trusted_gives_the_leftmost() -> None:
    assert resolve("10.0.0.1", XFF, ["10.0.0.3, 10.0.0.2"], PROXIES) == "10.0.0.3"
    assert resolve("10.0.0.1", XFF, [], PROXIES) == "10.0.0.1"


def test_ipv4_mapped_peer_and_entries_are_tested_as_ipv4() -> None:
    assert (
        resolve("::ffff:10.0.0.1", XFF, ["::ffff:203.0.113.9"], PROXIES)
        == "203.0.113.9"
    )
    # A mapped form of a trusted range does not let an attacker hide.
    assert resolve("10.0.0.1", XFF, ["6.6.6.6, ::ffff:10.9.9.9"], PROXIES) == "6.6.6.6"


@pytest.mark.parametrize(
    ("peer", "client"),
    [
        ("::ffff:203.0.113.9", "203.0.113.9"),  # a dual-stack server's IPv4 peer
        ("2001:DB8::0:1", "2001:db8::1"),
        ("203.0.113.9", "203.0.113.9"),
        ("not an address", "not an address"),
    ],
)
def test_without_proxies_a_peer_counts_in_one_spelling(peer: str, client: str) -> None:
    """One peer is one bucket however its server writes it: a mapped IPv4
    peer counts with the plain IPv4 one, IPv6 in its short lower-case form."""
    app = Flask(__name__)
    Lockout(app)
    for _ in range(2):  # the second answer comes from the cache
        with app.test_request_context(environ_base={"REMOTE_ADDR": peer}):
            assert get_client_ip() == client


def test_huge_header_is_bounded_and_safe() -> None:
    hostile = ", ".join(["10.1.1.1"] * 10_000) + ", 203.0.113.9"
    assert len(hostile) > 64 * 1024
    assert resolve("10.0.0.1", XFF, [hostile], PROXIES) == "203.0.113.9"
    # All trusted and longer than we read: the walk stops at the bound.
    only_proxies = ", ".join(["10.1.1.1"] * 10_000)
    assert resolve("10.0.0.1", XFF, [only_proxies], PROXIES) == "10.1.1.1"


def test_hop_count_mode() -> None:
    assert resolve("192.0.2.1", XFF, ["6.6.6.6, 203.0.113.9"], 1) == "203.0.113.9"
    assert (
        resolve("192.0.2.1", XFF, ["6.6.6.6, 203.0.113.9, 198.51.100.2"], 2)
        == "203.0.113.9"
    )
    # Fewer entries than hops: the leftmost valid one.
    assert resolve("192.0.2.1", XFF, ["203.0.113.9"], 2) == "203.0.113.9"
    # Every hop is validated.
    assert (
        resolve("192.0.2.1", XFF, ["6.6.6.6, garbage, 198.51.100.2"], 2)
        == "198.51.100.2"
    )


def test_x_real_ip() -> None:
    assert resolve("10.0.0.1", "X-Real-IP", ["203.0.113.9"], PROXIES) == "203.0.113.9"
    assert resolve("203.0.113.1", "X-Real-IP", ["6.6.6.6"], PROXIES) == "203.0.113.1"


def test_forwarded_rfc7239() -> None:
    header = 'for=6.6.6.6, for="[2001:db8:cafe::17]:4711";proto=https;by=10.0.0.1'
    assert resolve("10.0.0.1", "Forwarded", [header], PROXIES) == "2001:db8:cafe::17"
    assert (
        resolve("10.0.0.1", "Forwarded", ["For=203.0.113.9"], PROXIES) == "203.0.113.9"
    )
    assert resolve("10.0.0.1", "Forwarded", ["for=unknown"], PROXIES) == "10.0.0.1"
    assert resolve("10.0.0.1", "Forwarded", ["proto=https"], PROXIES) == "10.0.0.1"
    assert resolve("10.0.0.1", "Forwarded", ['for="_gazonk"'], PROXIES) == "10.0.0.1"


FWD = "Forwarded"


def forwarded(*lines: str, trusted: Any = PROXIES) -> str:
    return resolve("10.0.0.1", FWD, list(lines), trusted)


def test_forwarded_quoted_host_never_splits_an_element() -> None:
    # The proxy copies the client's Host into host="..."; a comma in it used
    # to start an element of the client's choosing.
    attack = 'for=203.0.113.9;host="x,for=6.6.6.1"'
    assert forwarded(attack) == "203.0.113.9"
    assert forwarded(attack, trusted=1) == "203.0.113.9"
    assert forwarded('for=203.0.113.9;host="x, for=6.6.6.1, for=6.6.6.2"') == (
        "203.0.113.9"
    )
    assert forwarded('for=203.0.113.9;host="x;for=6.6.6.1"') == "203.0.113.9"


def test_forwarded_quoted_ipv6_with_port() -> None:
    assert forwarded('for="[2001:db8::1]:4711"') == "2001:db8::1"
    assert forwarded('for="[2001:db8::1]:4711";proto=https') == "2001:db8::1"
    # A trusted IPv6 proxy is skipped like any other.
    assert forwarded('for=203.0.113.9, for="[2001:db8:ffff::2]:443"') == "203.0.113.9"
    assert forwarded('for="[2001:db8::1]", for="[2001:db8:ffff::2]"') == "2001:db8::1"


def test_forwarded_escaped_quotes_and_backslashes() -> None:
    # \" inside the quotes does not end them, so the comma stays inside.
    assert forwarded(r'for=203.0.113.9;host="a\",for=6.6.6.1"') == "203.0.113.9"
    assert forwarded(r'for=203.0.113.9;host="a\\\",for=6.6.6.1"') == "203.0.113.9"
    # \\ is a backslash: the quote after it closes, and the walk goes on.
    assert forwarded(r'for=198.51.100.7;host="a\\", for=10.0.0.2') == "198.51.100.7"
    assert forwarded(r'for=198.51.100.7;host="a\"b", for=10.0.0.2') == "198.51.100.7"
    assert forwarded(r'for="203.0.113.\9"') == "203.0.113.9"


def test_forwarded_several_header_lines() -> None:
    assert forwarded("for=6.6.6.6", "for=203.0.113.9") == "203.0.113.9"
    assert forwarded("for=198.51.100.7", "for=10.0.0.2") == "198.51.100.7"
    assert forwarded("for=198.51.100.7, for=10.0.0.3", "for=10.0.0.2") == (
        "198.51.100.7"
    )
    # An unclosed quote the client sent cannot swallow what the proxy added,
    # on its own line or on the same one.
    assert forwarded('for="6.6.6.6', "for=203.0.113.9") == "203.0.113.9"
    assert forwarded('for="6.6.6.6, for=203.0.113.9') == "203.0.113.9"
    assert forwarded('for=6.6.6.6;host="', "for=10.0.0.2") == "10.0.0.2"


@pytest.mark.parametrize(
    "element",
    [
        '"for=6.6.6.6"',  # a quoted string is not an element
        "for=6.6.6.6;for=6.6.6.7",  # two for= in one element
        'for=6.6.6.6;host="unclosed',
        'for=6.6.6.6;host="a"b',
        "for=6.6.6.6 junk",
        "for=6.6.6.6;junk",
        "for=",
        'for=""',
        "6.6.6.6",
        "proto=https",
        "for=6.6.6.6\x00",
        'for="6.6.6.6\r\n"',
        "",
        " ",
    ],
)
def test_forwarded_malformed_element_ends_the_walk(element: str) -> None:
    assert forwarded(element) == "10.0.0.1"
    assert forwarded(f"for=198.51.100.7, {element}, for=10.0.0.2") == "10.0.0.2"


@pytest.mark.parametrize(
    "element",
    [
        "for=203.0.113.9;;proto=https",  # empty pairs are allowed
        ";for=203.0.113.9",
        "proto=https;FOR=203.0.113.9;by=10.0.0.1",
        " for = 203.0.113.9 ; proto=https ",
        'for="203.0.113.9";host="\xe9xample.com"',  # obs-text in quotes
    ],
)
def test_forwarded_well_formed_variants(element: str) -> None:
    assert forwarded(element) == "203.0.113.9"


HOSTILE = st.text(alphabet='",;=\\ \tfor6.[]:ax\xe9', max_size=80)


@settings(max_examples=400, deadline=None)
@given(prefix=HOSTILE | st.text(max_size=80), host=HOSTILE, own_line=st.booleans())
def test_forwarded_client_text_never_decides(
    prefix: str, host: str, own_line: bool
) -> None:
    # Whatever the client sends as its own Forwarded header, and whatever it
    # puts in the Host that the proxy quotes (escaping as RFC 7230 says), the
    # answer is the address the proxy wrote.
    quoted = host.replace("\\", "\\\\").replace('"', '\\"')
    appended = f'for=203.0.113.9;host="{quoted}", for=10.0.0.2'
    lines = [prefix, appended] if own_line else [f"{prefix}, {appended}"]
    assert forwarded(*lines) == "203.0.113.9"


@pytest.mark.parametrize("unit", ["x", "x,", r"\"", r"\\", '\\",for=6.6.6.6,'])
def test_forwarded_cut_never_lets_quoted_text_become_an_element(unit: str) -> None:
    # The client's own element, ending in a long quoted host that hides a
    # for=, then a trusted hop. Sweep the 4 KiB cut across every position of
    # the quoted text: the answer is the client's real element or the
    # trusted hop, never the hidden address.
    seen = set()
    for size in range(MAX_HEADER_BYTES - 120, MAX_HEADER_BYTES + 40):
        pad = (unit * size)[:size]
        if pad.endswith("\\") and (len(pad) - len(pad.rstrip("\\"))) % 2:
            pad += "\\"  # keep the closing quote unescaped
        header = f'for=198.51.100.7;host="{pad},for=6.6.6.6", for=10.0.0.2'
        seen.add(forwarded(header))
    assert seen == {"198.51.100.7", "10.0.0.2"}


def test_forwarded_huge_header_keeps_the_rightmost_elements() -> None:
    hostile = 'for=6.6.6.6;host="' + "a" * 70_000 + '"'
    assert forwarded(hostile, "for=203.0.113.9") == "203.0.113.9"
    assert forwarded(hostile + ", for=203.0.113.9") == "203.0.113.9"
    assert forwarded("for=10.1.1.1, " * 10_000 + "for=10.0.0.2") == "10.1.1.1"
    # The real client's element cut by the bound is garbage, not the client.
    assert forwarded(hostile + ";for=6.6.6.7") == "10.0.0.1"


def test_entries_from_right() -> None:
    header = 'for=6.6.6.6, for="[2001:db8::1]:4711";host="a,b", proto=https'
    assert list(entries_from_right(FWD, [header])) == [
        "",
        "[2001:db8::1]:4711",
        "6.6.6.6",
    ]
    assert list(entries_from_right(XFF, ["1.1.1.1, 2.2.2.2", "3.3.3.3"])) == [
        "3.3.3.3",
        " 2.2.2.2",
        "1.1.1.1",
    ]
    assert len(list(entries_from_right(FWD, ["for=1.1.1.1," * 100]))) == 32


def test_xff_cut_mid_entry_is_not_read_as_an_address() -> None:
    # All hops trusted, so the walk reaches the leftmost entry.
    def header(spaces: int) -> str:
        return "10.0.0.3," + " " * spaces + "10.0.0.2"

    assert len(header(MAX_HEADER_BYTES - 17)) == MAX_HEADER_BYTES
    assert resolve("10.0.0.1", XFF, [header(MAX_HEADER_BYTES - 17)], PROXIES) == (
        "10.0.0.3"
    )
    # One byte more and the cut leaves "0.0.0.3", which is not the client.
    assert resolve("10.0.0.1", XFF, [header(MAX_HEADER_BYTES - 16)], PROXIES) == (
        "10.0.0.2"
    )


def test_no_peer_address_is_stable() -> None:
    assert resolve(None, XFF, ["203.0.113.9"], ()) == "unknown"
    assert resolve("", XFF, [], ()) == "unknown"
    # A unix socket peer can only be a local proxy.
    assert resolve(None, XFF, ["203.0.113.9"], PROXIES) == "203.0.113.9"


def test_ipv6_clients_are_keyed_by_network() -> None:
    assert ip_key("2001:db8:1:2:3:4:5:6", 64) == "2001:db8:1:2::/64"
    assert ip_key("2001:db8:1:2:ffff::1", 64) == "2001:db8:1:2::/64"
    assert ip_key("2001:db8:1:2:3:4:5:6", 48) == "2001:db8:1::/48"
    assert ip_key("203.0.113.9", 64) == "203.0.113.9"


def app_with(config: dict[str, Any]) -> Flask:
    app = Flask(__name__)
    app.config.update(config)
    lockout = Lockout(app)

    @app.post("/login")
    @lockout.lockout_on_failure(by="ip")
    def login() -> tuple[str, int]:
        return get_client_ip(), 401

    return app


def test_through_flask_with_cidrs() -> None:
    app = app_with(
        {
            "LOCKOUT_TRUSTED_PROXIES": ["10.0.0.0/8"],
            "LOCKOUT_MAX_FAILURES": 2,
            "LOCKOUT_IP_MAX_FAILURES": 2,
        }
    )
    client = app.test_client()
    env = {"REMOTE_ADDR": "10.0.0.1"}
    seen = client.post(
        "/login", headers={XFF: "6.6.6.6, 203.0.113.9"}, environ_base=env
    )
    assert seen.data == b"203.0.113.9"
    # Rotating the spoofed part does not give a fresh bucket.
    client.post("/login", headers={XFF: "7.7.7.7, 203.0.113.9"}, environ_base=env)
    refused = client.post(
        "/login", headers={XFF: "8.8.8.8, 203.0.113.9"}, environ_base=env
    )
    assert refused.status_code == 429


def test_through_flask_forwarded_host_cannot_rotate_the_bucket() -> None:
    app = app_with(
        {
            "LOCKOUT_TRUSTED_PROXIES": ["10.0.0.0/8"],
            "LOCKOUT_TRUSTED_HEADER": "Forwarded",
            "LOCKOUT_MAX_FAILURES": 2,
            "LOCKOUT_IP_MAX_FAILURES": 2,
        }
    )
    client = app.test_client()
    env = {"REMOTE_ADDR": "10.0.0.1"}
    statuses = []
    for n in range(1, 4):
        # The proxy appends the client's element, copying its Host header.
        header = f'for=203.0.113.9;host="x,for=6.6.6.{n}";proto=https'
        response = client.post(
            "/login", headers={"Forwarded": header}, environ_base=env
        )
        statuses.append(response.status_code)
        if response.status_code == 401:
            assert response.data == b"203.0.113.9"
    assert statuses == [401, 401, 429]


def test_through_flask_without_trust_headers_are_ignored() -> None:
    app = app_with({"LOCKOUT_MAX_FAILURES": 2, "LOCKOUT_IP_MAX_FAILURES": 2})
    client = app.test_client()
    for spoof in ("1.1.1.1", "2.2.2.2"):
        client.post(
            "/login", headers={XFF: spoof}, environ_base={"REMOTE_ADDR": "203.0.113.9"}
        )
    assert (
        client.post(
            "/login",
            headers={XFF: "3.3.3.3"},
            environ_base={"REMOTE_ADDR": "203.0.113.9"},
        ).status_code
        == 429
    )


def test_ipv6_rotation_inside_a_64_shares_a_bucket() -> None:
    app = app_with({"LOCKOUT_MAX_FAILURES": 2, "LOCKOUT_IP_MAX_FAILURES": 2})
    client = app.test_client()
    for host in ("2001:db8:1:2::1", "2001:db8:1:2::2"):
        assert (
            client.post("/login", environ_base={"REMOTE_ADDR": host}).data
            == host.encode()
        )
    assert (
        client.post(
            "/login", environ_base={"REMOTE_ADDR": "2001:db8:1:2::3"}
        ).status_code
        == 429
    )
    assert (
        client.post(
            "/login", environ_base={"REMOTE_ADDR": "2001:db8:1:3::1"}
        ).status_code
        == 401
    )


@pytest.mark.parametrize(
    "value",
    [
        "\x00\x01",
        "a" * 70_000,
        "1.2.3.4\tX",
        "💥, 10.0.0.1",
        ",,,,",
        'for="',
        "[::1",
    ],
)
def test_hostile_headers_never_500(value: str) -> None:
    app = app_with({"LOCKOUT_TRUSTED_PROXIES": ["10.0.0.0/8"]})
    for header in (XFF, "X-Real-IP", "Forwarded"):
        app.config["LOCKOUT_TRUSTED_HEADER"] = header
        response = app.test_client().post(
            "/login", headers={header: value}, environ_base={"REMOTE_ADDR": "10.0.0.1"}
        )
        assert response.status_code == 401


# -- the unconfigured-proxy warning ------------------------------------------------


@pytest.fixture
def caplog_warning(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> pytest.LogCaptureFixture:
    monkeypatch.setattr(client_ip, "_proxy_warning_given", False)
    caplog.set_level(logging.WARNING, logger="flask_lockout")
    return caplog


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "flask_lockout" and record.levelno == logging.WARNING
    ]


def post(app: Flask, remote_addr: str, headers: dict[str, str]) -> str:
    response = app.test_client().post(
        "/login", headers=headers, environ_base={"REMOTE_ADDR": remote_addr}
    )
    assert response.status_code == 401
    return response.get_data(as_text=True)


def test_proxy_warning_once_naming_the_setting(
    caplog_warning: pytest.LogCaptureFixture,
) -> None:
    app = app_with({})
    for _ in range(3):
        assert post(app, "127.0.0.1", {XFF: "203.0.113.9"}) == "127.0.0.1"
    [message] = warnings_of(caplog_warning)
    assert "127.0.0.1" in message and "X-Forwarded-For" in message
    assert "LOCKOUT_TRUSTED_PROXIES = ['127.0.0.1/32']" in message
    assert "LOCKOUT_TRUSTED_HEADER" not in message  # X-Forwarded-For is the default
    post(app_with({}), "10.1.2.3", {"Forwarded": "for=203.0.113.9"})
    assert len(warnings_of(caplog_warning)) == 1  # once per process, not per app


@pytest.mark.parametrize(
    ("remote_addr", "headers", "expected"),
    [
        ("10.1.2.3", {"X-Real-IP": "203.0.113.9"}, "['10.1.2.3/32']"),
        ("192.168.1.5", {"Forwarded": "for=203.0.113.9"}, "['192.168.1.5/32']"),
        ("::1", {XFF: "203.0.113.9"}, "['::1/128']"),
        ("fd00::7", {XFF: "203.0.113.9"}, "['fd00::7/128']"),
        ("::ffff:172.16.0.9", {XFF: "203.0.113.9"}, "['172.16.0.9/32']"),
        ("", {XFF: "203.0.113.9"}, "a unix socket"),
    ],
)
def test_proxy_warning_for_local_peers(
    caplog_warning: pytest.LogCaptureFixture,
    remote_addr: str,
    headers: dict[str, str],
    expected: str,
) -> None:
    post(app_with({}), remote_addr, headers)
    [message] = warnings_of(caplog_warning)
    assert expected in message and "LOCKOUT_TRUSTED_PROXIES" in message


def test_proxy_warning_names_the_header_setting_when_another_header_arrives(
    caplog_warning: pytest.LogCaptureFixture,
) -> None:
    post(app_with({}), "127.0.0.1", {"X-Real-IP": "203.0.113.9"})
    [message] = warnings_of(caplog_warning)
    assert "carry X-Real-IP" in message
    assert "LOCKOUT_TRUSTED_HEADER = 'X-Real-IP'" in message


def test_proxy_warning_when_the_proxy_is_not_in_the_trusted_list(
    caplog_warning: pytest.LogCaptureFixture,
) -> None:
    app = app_with({"LOCKOUT_TRUSTED_PROXIES": ["10.0.0.0/8"]})
    assert post(app, "127.0.0.1", {XFF: "203.0.113.9"}) == "127.0.0.1"
    [message] = warnings_of(caplog_warning)
    assert "['127.0.0.1/32']" in message


@pytest.mark.parametrize(
    ("config", "remote_addr", "headers"),
    [
        ({}, "8.8.8.8", {XFF: "6.6.6.6", "X-Real-IP": "6.6.6.6"}),  # public peer
        ({}, "2a00:1450::1", {"Forwarded": "for=6.6.6.6"}),
        ({}, "127.0.0.1", {}),  # no forwarding header
        ({}, "127.0.0.1", {"X-Forwarded-Host": "example.com"}),
        ({"LOCKOUT_TRUSTED_PROXIES": ["127.0.0.1/32"]}, "127.0.0.1", {XFF: "6.6.6.6"}),
        ({"LOCKOUT_TRUSTED_PROXIES": ["10.0.0.0/8"]}, "10.0.0.1", {XFF: "6.6.6.6"}),
        ({"LOCKOUT_TRUSTED_PROXIES": ["10.0.0.0/8"]}, "", {XFF: "6.6.6.6"}),
        ({"LOCKOUT_TRUSTED_PROXIES": 1}, "127.0.0.1", {XFF: "6.6.6.6"}),
    ],
)
def test_no_proxy_warning(
    caplog_warning: pytest.LogCaptureFixture,
    config: dict[str, Any],
    remote_addr: str,
    headers: dict[str, str],
) -> None:
    post(app_with(config), remote_addr, headers)
    assert warnings_of(caplog_warning) == []
    # Nothing was used up: a real case still warns afterwards.
    post(app_with({}), "127.0.0.1", {XFF: "203.0.113.9"})
    assert len(warnings_of(caplog_warning)) == 1


def test_no_proxy_warning_without_the_extension(
    caplog_warning: pytest.LogCaptureFixture,
) -> None:
    app = Flask(__name__)
    with app.test_request_context(
        headers={XFF: "6.6.6.6"}, environ_base={"REMOTE_ADDR": "127.0.0.1"}
    ):
        assert get_client_ip() == "127.0.0.1"
    assert warnings_of(caplog_warning) == []


def test_after_the_warning_the_check_is_skipped(
    caplog_warning: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = client_ip._is_local

    def spy(remote_addr: str) -> bool:
        calls.append(remote_addr)
        return real(remote_addr)

    monkeypatch.setattr(client_ip, "_is_local", spy)
    app = app_with({})
    post(app, "127.0.0.1", {XFF: "203.0.113.9"})
    assert calls == ["127.0.0.1"] and len(warnings_of(caplog_warning)) == 1
    post(app, "127.0.0.1", {XFF: "203.0.113.9"})
    post(app, "10.9.9.9", {"X-Real-IP": "203.0.113.9"})
    assert calls == ["127.0.0.1"]


@pytest.mark.parametrize(
    "remote_addr", ["127.0.0.1", "::1", "", "garbage", "fe80::1%eth0", "10.0.0.1:80"]
)
@pytest.mark.parametrize(
    "value", ["\x00\x01", "a" * 70_000, "💥", 'for="', "%s%s%n", "x\x0by"]
)
def test_proxy_warning_never_500(
    caplog_warning: pytest.LogCaptureFixture, remote_addr: str, value: str
) -> None:
    headers = {name: value for name in client_ip.FORWARDING_HEADERS}
    app = app_with({})
    app.config["LOCKOUT_TRUSTED_HEADER"] = "Forwarded"
    post(app, remote_addr, headers)
    assert all(value not in message for message in warnings_of(caplog_warning))
