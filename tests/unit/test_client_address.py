"""The client behind proxies: X-Forwarded-For read right to left, trusted hops skipped."""

from __future__ import annotations

import pytest

from streamcart.config.resolve import validate
from streamcart.errors import InvalidConfigError
from streamcart.gateway.client_address import (
    bucket_subject,
    client_address,
    forwarded_for,
    trusted_networks,
)
from streamcart.gateway.settings import gateway_scope

TRUSTED = trusted_networks(("10.0.0.0/8", "fd00::/8"))


@pytest.mark.parametrize(
    ("peer", "hops", "client"),
    [
        # The proxy appended the client; whatever the client wrote before is ignored.
        ("10.0.0.5", ["203.0.113.1"], "203.0.113.1"),
        ("10.0.0.5", ["1.1.1.1, 203.0.113.1"], "203.0.113.1"),
        # Two trusted hops (an ingress behind a load balancer), then the client.
        ("10.0.0.5", ["198.51.100.9, 203.0.113.1, 10.0.0.9"], "203.0.113.1"),
        # Several headers count as one list, in order.
        ("10.0.0.5", ["198.51.100.9", "203.0.113.1, 10.0.0.9"], "203.0.113.1"),
        # An untrusted peer is the client, whatever it sends.
        ("203.0.113.50", ["1.2.3.4"], "203.0.113.50"),
        # Nothing but trusted hops: the first of them.
        ("10.0.0.5", ["10.0.0.7, 10.0.0.6"], "10.0.0.7"),
        # Ports and brackets, as some proxies write them; IPv6 proxies.
        ("10.0.0.5", ["203.0.113.1:4711"], "203.0.113.1"),
        ("fd00::5", ["[2001:db8::1]:443"], "2001:db8::1"),
        ("fd00::5", ["2001:db8::2"], "2001:db8::2"),
        # A proxy reached over IPv6 with an IPv4-mapped address.
        ("::ffff:10.0.0.5", ["203.0.113.1"], "203.0.113.1"),
        # Not an address: the trusted hop that passed it on is the client.
        ("10.0.0.5", ["203.0.113.1, unknown"], "10.0.0.5"),
        ("10.0.0.5", ["_hidden, 10.0.0.9"], "10.0.0.9"),
        ("10.0.0.5", [""], "10.0.0.5"),
        # A peer that is not an address (a test client, a socket path) stays as it is.
        ("testclient", ["203.0.113.1"], "testclient"),
    ],
)
def test_the_first_untrusted_address_from_the_right_is_the_client(
    peer: str, hops: list[str], client: str
) -> None:
    assert client_address(peer, hops, TRUSTED) == client


def test_no_trusted_proxy_means_the_peer_is_always_the_client() -> None:
    assert client_address("127.0.0.1", ["203.0.113.1"], trusted_networks(())) == "127.0.0.1"


def test_the_headers_are_read_from_the_raw_scope_in_order() -> None:
    headers = [(b"x-forwarded-for", b"1.1.1.1"), (b"host", b"x"), (b"x-forwarded-for", b"2.2.2.2")]
    assert forwarded_for(headers) == ["1.1.1.1", "2.2.2.2"]


def test_trusted_proxies_are_checked_when_set() -> None:
    scope = gateway_scope()
    assert validate(scope, "trusted_proxies", '["10.0.0.0/8", "fd00::/8", "192.0.2.1"]') == (
        "10.0.0.0/8", "fd00::/8", "192.0.2.1",
    )  # fmt: skip
    with pytest.raises(InvalidConfigError, match=r"'10\.0\.0\.0/33' is not an IP address or CIDR"):
        validate(scope, "trusted_proxies", '["10.0.0.0/33"]')
    with pytest.raises(InvalidConfigError, match="rate must be a finite number above 0"):
        validate(scope, "login_account_rate", "0")


@pytest.mark.parametrize(
    ("address", "subject"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:fffe", "2001:db8:1:2::/64"),  # the same client
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),  # another one
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("testclient", "testclient"),
    ],
)
def test_an_ipv6_client_has_one_bucket_for_its_whole_64(address: str, subject: str) -> None:
    """Else a client rotating through its /64 would get a fresh budget each request."""
    assert bucket_subject(address) == subject
