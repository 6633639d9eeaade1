"""The simulated internet's sockets and rules, set up with light imports only (socket,
ctypes): the server binds everything and reports ready *before* it imports asyncio, ssl and
dnslib (most of its start-up, ~0.5 s on a busy machine), because the kernel queues what the
target sends meanwhile — a connection waits in the listen backlog, a datagram in the
socket buffer — so the target need not wait for the imports."""

from __future__ import annotations

import signal
import socket
from dataclasses import dataclass

from bubble.netsim.divert import SINK_PORT, divert_every_port, route_everything_to_lo

SOL_IPV6 = 41
IP_TRANSPARENT = 19
IPV6_TRANSPARENT = 75
IP_RECVORIGDSTADDR = 20  # SOL_IP: cmsg IP_ORIGDSTADDR (same number) carries a sockaddr_in
IPV6_RECVORIGDSTADDR = 74  # SOL_IPV6: cmsg IPV6_ORIGDSTADDR carries a sockaddr_in6
IPV6_RECVPKTINFO = 49
IPV6_PKTINFO = 50
LISTEN_BACKLOG = 4096  # the kernel caps it at net.core.somaxconn (4096 in a new namespace)
FALLBACK_PORTS = (21, 22, 23, 25, 80, 443, 1337, 4444, 6667, 8080, 8443, 31337)


class SetupError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Bound:
    dns_udp: socket.socket
    dns_tcp: socket.socket
    tcp: list[socket.socket]  # the TPROXY sink, or FALLBACK_PORTS listeners
    udp: socket.socket | None  # the datagram sink (None without the TPROXY rule)
    problem: str | None  # why every port could not be diverted, if so


def dual_stack(kind: int, port: int, *options: tuple[int, int, int]) -> socket.socket:
    """A non-blocking IPv6 socket that also takes IPv4 (mapped), bound to [::]:port
    (and listening, for a stream socket)."""
    sock = socket.socket(socket.AF_INET6, kind)
    try:
        sock.setsockopt(SOL_IPV6, socket.IPV6_V6ONLY, 0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        for level, name, value in options:
            sock.setsockopt(level, name, value)
        sock.bind(("::", port))
        if kind == socket.SOCK_STREAM:
            sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def bind(routes: bool) -> Bound:
    """Rules and sockets in the current network namespace (with `routes`, make every
    address local first, for a namespace no wall configured). SIGTERM is blocked from here
    until the server handles it: a run that ends during the imports still gets what was
    queued recorded."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    if routes and (why := route_everything_to_lo()):
        raise SetupError(f"cannot route every address to lo: {why}")
    problem = divert_every_port()
    dns_udp = dual_stack(socket.SOCK_DGRAM, 53, (SOL_IPV6, IPV6_RECVPKTINFO, 1))
    dns_tcp = dual_stack(socket.SOCK_STREAM, 53)
    if problem:
        tcp = [dual_stack(socket.SOCK_STREAM, p) for p in FALLBACK_PORTS]
        return Bound(dns_udp, dns_tcp, tcp, None, problem)
    transparent = ((socket.SOL_IP, IP_TRANSPARENT, 1), (SOL_IPV6, IPV6_TRANSPARENT, 1))
    tcp = [dual_stack(socket.SOCK_STREAM, SINK_PORT, *transparent)]
    udp = dual_stack(
        socket.SOCK_DGRAM,
        SINK_PORT,
        *transparent,
        (socket.SOL_IP, IP_RECVORIGDSTADDR, 1),
        (SOL_IPV6, IPV6_RECVORIGDSTADDR, 1),
    )
    return Bound(dns_udp, dns_tcp, tcp, udp, None)
