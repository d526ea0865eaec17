"""Where a webhook may be sent (ADR 0019): a host on the allow-list, over https (unless the
settings allow http), at an address that is public after DNS resolution. Private, loopback,
link-local, multicast, reserved and unspecified addresses are refused (loopback only unless
`webhook_allow_loopback`, which the local stack and tests set), and so is a name that
resolves to any of them. The delivery then connects to the address checked here, never
resolving the name again, so a second DNS answer cannot move it elsewhere.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class DestinationRefusedError(Exception):
    """The webhook's URL may not be reached; the message says why."""


@dataclass(frozen=True)
class Destination:
    url: httpx.URL  # as configured
    address: IPAddress  # the checked address to connect to

    @property
    def connect_url(self) -> httpx.URL:
        """The URL with the checked address in place of the name (the Host header and TLS
        server name stay the configured name)."""
        return self.url.copy_with(host=str(self.address))


def host_allowed(host: str, patterns: tuple[str, ...]) -> bool:
    host = host.lower().rstrip(".")
    for pattern in patterns:
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                return True
        elif host == pattern:
            return True
    return False


def address_refusal(address: IPAddress, *, allow_loopback: bool) -> str | None:
    """Why an address may not be reached, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo[1] if address.teredo else None)
        if embedded is not None:
            why = address_refusal(embedded, allow_loopback=allow_loopback)
            return f"{why} (inside the IPv6 address {address})" if why else None
    if address.is_loopback:
        return None if allow_loopback else "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_private:
        return "a private address"
    if address.is_reserved or not address.is_global:
        return "a reserved (not globally routable) address"
    return None


async def resolve(
    url: str,
    *,
    patterns: tuple[str, ...],
    require_https: bool,
    allow_loopback: bool,
    timeout_s: float,
) -> Destination:
    """Check a webhook URL and resolve its host to one address that may be reached."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise DestinationRefusedError(f"not a URL: {exc}") from exc
    allowed_schemes = ("https",) if require_https else ("https", "http")
    if parsed.scheme not in allowed_schemes:
        raise DestinationRefusedError(f"scheme {parsed.scheme!r} not allowed (only {', '.join(allowed_schemes)})")
    if parsed.userinfo:
        raise DestinationRefusedError("credentials in the URL are not allowed")
    host = parsed.host
    if not host:
        raise DestinationRefusedError("the URL names no host")
    if not host_allowed(host, patterns):
        raise DestinationRefusedError(f"host {host!r} is not on the allow-list (webhook_allowed_hosts)")
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        candidates = [literal]
    else:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            infos = await asyncio.wait_for(
                asyncio.get_running_loop().getaddrinfo(
                    parsed.raw_host.decode("ascii"), port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
                ),
                timeout_s,
            )
        except (OSError, TimeoutError, UnicodeError) as exc:
            raise DestinationRefusedError(f"host {host!r} does not resolve: {exc or type(exc).__name__}") from exc
        candidates = []
        for info in infos:
            # An IPv6 scope (fe80::1%eth0) is link-local anyway; the address part decides.
            text = str(info[4][0]).split("%", 1)[0]
            candidates.append(ipaddress.ip_address(text))
        if not candidates:
            raise DestinationRefusedError(f"host {host!r} resolves to no address")
    # Every address must pass: a name with one public and one private address is refused,
    # whichever of them a connection would have used.
    for address in candidates:
        why = address_refusal(address, allow_loopback=allow_loopback)
        if why is not None:
            shown = f"{host} resolves to {address}" if literal is None else str(address)
            raise DestinationRefusedError(f"{shown}, {why}: webhooks never go there")
    return Destination(url=parsed, address=candidates[0])
