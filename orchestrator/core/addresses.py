"""Host names and addresses that stay on this host (loopback), as listeners and manifest rules judge them."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """`localhost`, or a literal loopback address (127.0.0.0/8, ::1; brackets around an IPv6 one allowed)."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
