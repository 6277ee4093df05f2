"""Who the client is behind proxies: ``X-Forwarded-For`` read from the right.

Each proxy appends the address it received the request from, so the header's
right end is the most trustworthy. Starting from the connection's peer, the
addresses are walked right to left for as long as the current hop is a
trusted proxy (one of the ``trusted_proxies`` CIDRs of the ``gateway``
scope); the first untrusted address is the client. Everything left of it was
written by the client itself and is ignored, so nobody can pick their own
rate-limit bucket by sending the header. A peer that is not a trusted proxy
is the client, whatever it sends.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
FORWARDED_FOR = b"x-forwarded-for"


@functools.lru_cache(maxsize=16)
def trusted_networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    """The networks of ``cidrs`` (``10.0.0.0/8``, ``fd00::/8``, a bare address).

    Raises:
        ValueError: one is not an address or a network, naming it.
    """
    networks = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"trusted_proxies: {cidr!r} is not an IP address or CIDR network "
                "(like 10.0.0.0/8 or fd00::/8)"
            ) from None
    return tuple(networks)


def client_address(peer: str, forwarded_for: Iterable[str], trusted: Sequence[Network]) -> str:
    """The client's address, given the connection's ``peer`` and the values of
    every ``X-Forwarded-For`` header in the order they came."""
    client = _parsed(peer)
    if client is None or not _is_trusted(client, trusted):
        return peer
    hops = [hop for value in forwarded_for for hop in value.split(",")]
    for hop in reversed(hops):
        address = _parsed(hop)
        if address is None:  # not what a proxy writes: the hop that passed it on is the client
            break
        client = address
        if not _is_trusted(address, trusted):
            break
    return str(client)


def forwarded_for(headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
    """The ``X-Forwarded-For`` values of raw ASGI headers, in order."""
    return [value.decode("latin-1") for name, value in headers if name == FORWARDED_FOR]


# One IPv6 client holds a whole /64 and may send from any address in it.
IPV6_CLIENT_PREFIX = 64


def bucket_subject(address: str) -> str:
    """The rate-limit subject of a client address: an IPv4 address itself, an
    IPv6 one its /64 (else each of its addresses would be a fresh bucket)."""
    parsed = _parsed(address)
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((parsed, IPV6_CLIENT_PREFIX), strict=False))
    return str(parsed) if parsed is not None else address


def _is_trusted(address: Address, trusted: Sequence[Network]) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in trusted)


def _parsed(text: str) -> Address | None:
    """An address as proxies write it: bare, ``1.2.3.4:port`` or ``[v6]:port``."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None
