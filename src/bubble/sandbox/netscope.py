"""Connect scopes (`[net] connect`, DESIGN §2.8): which endpoints a walled target may reach.

The target lives in its own network namespace, so nothing it does itself can leave; an allowed
connection is made by the supervisor from the host's network (`connector.py`) on the address
it read once and checked here. Host names in the policy are resolved once, when the run starts
(the answer is logged), and only their addresses are allowed afterwards: a name is never looked
up again on the target's behalf.
"""

from __future__ import annotations

import ipaddress
from _socket import SOCK_STREAM, getaddrinfo  # the C module: `socket` costs start-up

from bubble.scopes import endpoint

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConnectScopes:
    """Parsed `HOST:PORT` entries; `match(peer, port)` names the entry that allows it."""

    def __init__(self, entries: tuple[str, ...], resolve: Any = getaddrinfo) -> None:
        self.rules: list[tuple[Network, int | None, str]] = []
        self.notes: list[str] = []
        for text in entries:
            canonical = endpoint(text)
            host, _, port_text = canonical.rpartition(":")
            port = None if port_text == "*" else int(port_text)
            host = host.strip("[]")
            try:
                self.rules.append((ipaddress.ip_network(host, strict=False), port, canonical))
                continue
            except ValueError:
                pass
            try:
                infos = resolve(host, None, 0, SOCK_STREAM)
            except OSError as err:
                self.notes.append(f"connect scope {canonical}: {host} does not resolve ({err})")
                continue
            addrs = sorted({str(info[4][0]) for info in infos})
            self.notes.append(f"connect scope {canonical}: {host} resolved to {', '.join(addrs)}")
            for addr in addrs:
                self.rules.append((ipaddress.ip_network(addr), port, canonical))

    def match(self, peer: str, port: int | None) -> str | None:
        if port is None:
            return None
        try:
            ip = ipaddress.ip_address(peer)
        except ValueError:
            return None
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        for net, want, text in self.rules:
            if ip in net and (want is None or want == port):
                return text
        return None
