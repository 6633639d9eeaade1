"""The UDP side: the DNS server on port 53 and the datagram sink for every other port. Both
read with `recvmsg` for the ancillary data asyncio's datagram protocol does not give: the DNS
server must answer *from* the address the query went to (the resolver rejects any other
source), and the sink learns each datagram's original destination from IP_ORIGDSTADDR (the
TPROXY rule delivered it to our one socket)."""

from __future__ import annotations

import socket
import struct

from bubble.netsim import dns
from bubble.netsim.names import Names
from bubble.netsim.record import Limits, Recorder, Seen
from bubble.netsim.sinkhole import plain_address
from bubble.netsim.sockets import IP_RECVORIGDSTADDR, IPV6_PKTINFO, IPV6_RECVORIGDSTADDR, SOL_IPV6

_ANC = socket.CMSG_SPACE(64) * 2
_ORIGDST = ((socket.SOL_IP, IP_RECVORIGDSTADDR), (SOL_IPV6, IPV6_RECVORIGDSTADDR))
LISTEN_BACKLOG = 4096  # the kernel caps it at net.core.somaxconn (4096 in a new namespace)
_BURST = 64  # datagrams read per readiness callback before yielding to the loop


def _sockaddr(data: bytes) -> tuple[str, int] | None:
    """(address, port) of a sockaddr_in / sockaddr_in6 from a control message."""
    if len(data) >= 8 and int.from_bytes(data[:2], "little") == socket.AF_INET:
        return socket.inet_ntoa(data[4:8]), struct.unpack("!H", data[2:4])[0]
    if len(data) >= 24 and int.from_bytes(data[:2], "little") == socket.AF_INET6:
        addr = socket.inet_ntop(socket.AF_INET6, data[8:24])
        return plain_address(addr), struct.unpack("!H", data[2:4])[0]
    return None


class DatagramSink:
    """Records every datagram that reaches the sink socket (no reply)."""

    def __init__(self, sock: socket.socket, recorder: Recorder, limits: Limits) -> None:
        self.sock = sock
        self.recorder = recorder
        self.limits = limits
        self.count = 0

    def on_readable(self, until_empty: bool = False) -> None:
        for _ in iter(int, 1) if until_empty else range(_BURST):
            try:
                data, anc, flags, _src = self.sock.recvmsg(self.limits.per_connection, _ANC)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # e.g. a queued ICMP error: nothing to record
            dest = None
            for level, kind, payload in anc:
                if (level, kind) in _ORIGDST:
                    dest = _sockaddr(payload)
            self.count += 1
            if self.count > self.limits.datagrams:
                self.recorder.counts["datagrams_dropped"] += 1
                continue
            peer, port = dest or ("?", 0)
            truncated = bool(flags & socket.MSG_TRUNC)
            self.recorder.seen(Seen(peer, port, "udp", data, truncated=truncated, ended="datagram"))


class DnsServer:
    """Answers DNS over UDP, replying from the address each query was sent to."""

    def __init__(self, sock: socket.socket, recorder: Recorder, names: Names) -> None:
        self.sock = sock
        self.recorder = recorder
        self.names = names

    def on_readable(self) -> None:
        for _ in range(_BURST):
            try:
                query, anc, _flags, src = self.sock.recvmsg(dns.MAX_QUERY, _ANC)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            pktinfo = next((p for lv, k, p in anc if (lv, k) == (SOL_IPV6, IPV6_PKTINFO)), None)
            server = socket.inet_ntop(socket.AF_INET6, pktinfo[:16]) if pktinfo else "?"
            reply, asked = dns.answer(query, self.names)
            self.recorder.dns(asked, "udp", plain_address(server))
            if reply is None:
                continue
            # Answer from the address asked (in6_pktinfo: address, interface index 0).
            cmsg = [(SOL_IPV6, IPV6_PKTINFO, pktinfo[:16] + b"\0\0\0\0")] if pktinfo else []
            try:
                self.sock.sendmsg([reply], cmsg, 0, src)
            except OSError:
                continue  # the client went away; the question is recorded
