"""Which address a name gets: the n-th new name of a run gets the n-th address of a range
kept for benchmarks and documentation, so an address says at once that it came from our DNS
and maps back to its name (the Network panel shows "198.18.0.3 (stage2.example)").

IPv4: 198.18.0.0/15 (RFC 2544, benchmarking; never routed): 131,070 names. IPv6:
2001:db8:b0b::/48 inside 2001:db8::/32 (RFC 3849, documentation). Past the cap every new name
shares the last address: the answer stays valid and the record still names what was asked.
"""

from __future__ import annotations

import ipaddress

V4_NET = ipaddress.IPv4Network("198.18.0.0/15")
V6_NET = ipaddress.IPv6Network("2001:db8:b0b::/48")
MAX_NAMES = V4_NET.num_addresses - 2  # network and broadcast address left out


def normalise(name: str) -> str:
    """Case and the trailing dot do not make a new name."""
    return name.rstrip(".").lower()


class Names:
    """Name -> index, stable for the life of the object (one run)."""

    def __init__(self, limit: int = MAX_NAMES) -> None:
        self._index: dict[str, int] = {}
        self._names: list[str] = []
        self._limit = min(limit, MAX_NAMES)

    def index(self, name: str) -> int:
        key = normalise(name)
        found = self._index.get(key)
        if found is None:
            found = min(len(self._names), self._limit - 1) + 1
            if len(self._names) < self._limit:
                self._names.append(key)
            self._index[key] = found
        return found

    def v4(self, name: str) -> str:
        return str(V4_NET.network_address + self.index(name))

    def v6(self, name: str) -> str:
        return str(V6_NET.network_address + self.index(name))

    def name_of(self, address: str) -> str | None:
        """The name we answered with `address` (IPv4, IPv6 or IPv4-mapped), or None."""
        try:
            ip = ipaddress.ip_address(address.split("%")[0])
        except ValueError:
            return None
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        if ip in V4_NET:
            n = int(ip) - int(V4_NET.network_address)
        elif ip in V6_NET:
            n = int(ip) - int(V6_NET.network_address)
        else:
            return None
        return self._names[n - 1] if 1 <= n <= len(self._names) else None
