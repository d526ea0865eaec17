"""Who is calling, as far as the network can tell: the client address and the scheme.

`X-Forwarded-For` and `X-Forwarded-Proto` are believed only when the TCP peer is one of the
configured reverse proxies (RPM_API_TRUSTED_PROXIES, empty by default); anybody else could
write whatever address they like there and, for instance, escape login throttling. Behind
trusted proxies the client is the right-most address of the chain that is not a trusted
proxy itself (each proxy appends the address it saw; only the right end is not forgeable).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from api.settings import IPNetwork

UNKNOWN = "unknown"


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def is_trusted(host: str | None, proxies: Sequence[IPNetwork]) -> bool:
    """True when `host` is an address inside one of the proxy networks."""
    address = _address(host or "")
    return address is not None and any(address in network for network in proxies)


def client_address(peer: str | None, forwarded_for: Iterable[str], proxies: Sequence[IPNetwork]) -> str:
    """The client's address from the peer and the X-Forwarded-For header values."""
    if not peer:
        return UNKNOWN
    if not is_trusted(peer, proxies):
        return peer
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",") if hop.strip()]
    client = peer
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            break  # garbage from the left of the chain: keep the last hop we can vouch for
        client = str(address)
        if not is_trusted(client, proxies):
            break
    return client


def scheme(peer: str | None, own_scheme: str, forwarded_proto: Iterable[str], proxies: Sequence[IPNetwork]) -> str:
    """`https` or `http` as the client used it (a trusted proxy may have terminated TLS)."""
    if is_trusted(peer, proxies):
        values = [v.strip().lower() for value in forwarded_proto for v in value.split(",") if v.strip()]
        if values and values[-1] in ("http", "https"):
            return values[-1]
    return own_scheme
