"""The simulated internet's process. It runs inside the target's network namespace (joined
before it starts, or born there in tests), never under the target's filter:

1. (standalone only: make every address local, as the wall does) send every TCP/UDP port
   but 53 to one socket with a TPROXY rule (`divert`), so one listener sees every
   destination with the address and port dialled;
2. bind the DNS server (UDP and TCP 53) and the sinkhole, report `ready`;
3. serve until SIGTERM (the run ended), then record what is still open and exit.

Without libnftables the sinkhole listens on a list of common ports only, and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import socket
from dataclasses import dataclass, field

from bubble.netsim.accept import Acceptor
from bubble.netsim.divert import SINK_PORT, divert_every_port, route_everything_to_lo
from bubble.netsim.names import Names
from bubble.netsim.record import Limits, Recorder
from bubble.netsim.sinkhole import DEFAULT_BODY, Connection, DnsOverTcp, Shared
from bubble.netsim.udp import (
    IP_RECVORIGDSTADDR,
    IPV6_RECVORIGDSTADDR,
    IPV6_RECVPKTINFO,
    SOL_IPV6,
    DatagramSink,
    DnsServer,
    dual_stack,
)

IP_TRANSPARENT = 19
IPV6_TRANSPARENT = 75
FALLBACK_PORTS = (21, 22, 23, 25, 80, 443, 1337, 4444, 6667, 8080, 8443, 31337)


@dataclass(frozen=True, slots=True)
class Config:
    records_fd: int  # JSON records to the supervisor
    ready_fd: int  # one line: "ready" or "error MESSAGE"
    captures: str | None = None  # folder for payload artifacts
    body: bytes = DEFAULT_BODY
    terminate_tls: bool = True
    limits: Limits = field(default_factory=Limits)
    routes: bool = False  # make every address local first (when no wall did it)


class SetupError(Exception):
    pass


Sockets = tuple[socket.socket, socket.socket, list[socket.socket], socket.socket | None]


def _sockets(covered: bool) -> Sockets:
    """DNS UDP, DNS TCP, TCP sink listeners, UDP sink (None without the TPROXY rule)."""
    dns_udp = dual_stack(socket.SOCK_DGRAM, 53, (SOL_IPV6, IPV6_RECVPKTINFO, 1))
    dns_tcp = dual_stack(socket.SOCK_STREAM, 53)
    if covered:
        transparent = ((socket.SOL_IP, IP_TRANSPARENT, 1), (SOL_IPV6, IPV6_TRANSPARENT, 1))
        tcp = [dual_stack(socket.SOCK_STREAM, SINK_PORT, *transparent)]
        udp = dual_stack(
            socket.SOCK_DGRAM,
            SINK_PORT,
            *transparent,
            (socket.SOL_IP, IP_RECVORIGDSTADDR, 1),
            (SOL_IPV6, IPV6_RECVORIGDSTADDR, 1),
        )
        return dns_udp, dns_tcp, tcp, udp
    return dns_udp, dns_tcp, [dual_stack(socket.SOCK_STREAM, p) for p in FALLBACK_PORTS], None


async def _serve(cfg: Config) -> None:
    loop = asyncio.get_running_loop()
    names = Names()
    recorder = Recorder(cfg.records_fd, names, cfg.captures, cfg.limits)
    if cfg.routes and (why := route_everything_to_lo()):
        raise SetupError(f"cannot route every address to lo: {why}")
    problem = divert_every_port()
    if problem:
        ports = ", ".join(map(str, FALLBACK_PORTS))
        recorder.note(f"every port cannot be diverted ({problem}): TCP sinkhole on {ports} only")
    dns_udp, dns_tcp, tcp, udp = _sockets(problem is None)
    shared = Shared(recorder, cfg.limits, cfg.body, cfg.terminate_tls)
    acceptors = [Acceptor(dns_tcp, functools.partial(DnsOverTcp, shared, names), shared)]
    acceptors += [Acceptor(sock, functools.partial(Connection, shared), shared) for sock in tcp]
    for acceptor in acceptors:
        acceptor.resume()
    loop.add_reader(dns_udp.fileno(), DnsServer(dns_udp, recorder, names).on_readable)
    if udp is not None:
        sink = DatagramSink(udp, recorder, cfg.limits)
        loop.add_reader(udp.fileno(), sink.on_readable)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    os.write(cfg.ready_fd, b"ready\n")
    await stop.wait()
    # Connections the kernel completed but we have not accepted yet, and datagrams queued,
    # are the target's too: take them before the listeners close (closing would reset them).
    for acceptor in acceptors:
        await acceptor.close()
    if udp is not None:
        sink.on_readable(until_empty=True)
    shared.finish_all()
    recorder.summary()
    recorder.close()


def main(cfg: Config) -> int:
    """Serve until SIGTERM; 0, or 1 after writing `error MESSAGE` on the ready fd."""
    try:
        asyncio.run(_serve(cfg))
    except (OSError, SetupError) as err:
        with contextlib.suppress(OSError):
            os.write(cfg.ready_fd, f"error {err}\n".encode())
        return 1
    return 0
