from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from flask import Flask

from flask_lockout import Lockout, get_client_ip
from flask_lockout.client_ip import ip_key, parse_address, resolve

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
        {"LOCKOUT_TRUSTED_PROXIES": ["10.0.0.0/8"], "LOCKOUT_MAX_FAILURES": 2}
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


def test_through_flask_without_trust_headers_are_ignored() -> None:
    app = app_with({"LOCKOUT_MAX_FAILURES": 2})
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
    app = app_with({"LOCKOUT_MAX_FAILURES": 2})
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
