"""Who is on the other end of a request: the client address, and whether a trusted proxy speaks.

The client address is the socket peer, unless the peer is one of ``PIPELINE_TRUSTED_PROXIES``:
then it is the rightmost address of ``X-Forwarded-For`` that is not itself a trusted proxy (the
proxies append what they saw, so addresses further left were written by the client and prove
nothing). The same rule decides whether ``X-Forwarded-Proto`` and the SSO user header are believed.
``pipeline serve`` runs uvicorn with its own proxy-header handling off, so the peer seen here is the
real socket peer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from ipaddress import IPv4Network, IPv6Network, ip_address

Networks = Sequence[IPv4Network | IPv6Network]


def is_trusted(address: str | None, proxies: Networks) -> bool:
    if not address or not proxies:
        return False
    try:
        ip = ip_address(address)
    except ValueError:
        return False
    return any(ip.version == net.version and ip in net for net in proxies)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return headers.get(name) or headers.get(name.lower())


def client_address(peer: str | None, headers: Mapping[str, str], proxies: Networks) -> str | None:
    """The client's address as this request's proxies report it (see the module's docstring)."""
    if not is_trusted(peer, proxies):
        return peer
    forwarded = _header(headers, "x-forwarded-for")
    if not forwarded:
        return peer
    hops = [h.strip() for h in forwarded.split(",") if h.strip()]
    for hop in reversed(hops):
        try:
            ip_address(hop)
        except ValueError:
            return peer  # a malformed hop: believe nothing the proxies did not see themselves
        if not is_trusted(hop, proxies):
            return hop
    return hops[0] if hops else peer


def is_https(scheme: str, peer: str | None, headers: Mapping[str, str], proxies: Networks) -> bool:
    """Served over https: TLS on our own socket, or a trusted proxy saying its client used https."""
    if scheme in ("https", "wss"):
        return True
    if not is_trusted(peer, proxies):
        return False
    proto = _header(headers, "x-forwarded-proto") or ""
    return proto.split(",")[0].strip().lower() == "https"
