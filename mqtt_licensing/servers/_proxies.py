"""Which address a request comes from, for rate limits: the TCP peer, unless the peer is a
proxy the operator named (``--trusted-proxies``); then the nearest ``X-Forwarded-For`` hop that
is not one of those proxies.

``X-Forwarded-For`` from anyone else is ignored: it is a header the client writes, and
honouring it let a client pick a new address per request and bypass the key-guessing limit
. Uvicorn's own proxy-header handling is off for the same reason (:mod:`._run`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from ..core.errors import ErrorCode, LicensingError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str | Iterable[str]) -> tuple[Network, ...]:
    """``"10.0.0.5, 192.168.0.0/16"`` (or a list of them) -> networks; a bad entry names itself."""
    items = text.split(",") if isinstance(text, str) else list(text)
    networks = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise LicensingError(
                ErrorCode.INVALID_FIELD, f"trusted proxy {item!r} is not an IP address or network (e.g. 10.0.0.0/8)"
            ) from None
    return tuple(networks)


def _within(address: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def source_address(peer: str, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> str:
    """The address to count a request against (see the module docstring)."""
    if not trusted or not _within(peer, trusted):
        return peer
    hops = [hop.strip() for header in forwarded_for for hop in header.split(",") if hop.strip()]
    for hop in reversed(hops):  # the right end was written by our own proxies
        if not _within(hop, trusted):
            return hop
    return hops[0] if hops else peer


__all__ = ["Network", "parse_networks", "source_address"]
