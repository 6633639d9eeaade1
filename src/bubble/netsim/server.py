"""The simulated internet's process. It runs inside the target's network namespace (joined
before it starts, or born there in tests), never under the target's filter:

1. `sockets.bind`: (standalone only: make every address local, as the wall does) send every
   TCP/UDP port but 53 to one socket with a TPROXY rule (`divert`), so one listener sees
   every destination with the address and port dialled; bind the DNS server (UDP and TCP
   53) and the sinkhole; report `ready` — with light imports only;
2. `serve`: import the rest, serve until SIGTERM (the run ended), record what is still open
   and exit.

Without libnftables the sinkhole listens on a list of common ports only, and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
from dataclasses import dataclass, field

from bubble.netsim.accept import Acceptor
from bubble.netsim.names import Names
from bubble.netsim.record import Limits, Recorder
from bubble.netsim.sinkhole import DEFAULT_BODY, Connection, DnsOverTcp, Shared
from bubble.netsim.sockets import FALLBACK_PORTS, Bound, SetupError, bind
from bubble.netsim.udp import DatagramSink, DnsServer


@dataclass(frozen=True, slots=True)
class Config:
    records_fd: int  # JSON records to the supervisor
    ready_fd: int  # one line: "ready" or "error MESSAGE"
    captures: str | None = None  # folder for payload artifacts
    body: bytes = DEFAULT_BODY
    terminate_tls: bool = True
    limits: Limits = field(default_factory=Limits)
    routes: bool = False  # make every address local first (when no wall did it)


async def _serve(cfg: Config, bound: Bound) -> None:
    loop = asyncio.get_running_loop()
    names = Names()
    recorder = Recorder(cfg.records_fd, names, cfg.captures, cfg.limits)
    if bound.problem:
        ports = ", ".join(map(str, FALLBACK_PORTS))
        why = bound.problem
        recorder.note(f"every port cannot be diverted ({why}): TCP sinkhole on {ports} only")
    dns_udp, dns_tcp, tcp, udp = bound.dns_udp, bound.dns_tcp, bound.tcp, bound.udp
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
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # one sent meanwhile: now
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


def serve(cfg: Config, bound: Bound) -> int:
    """Serve what `bind` set up until SIGTERM (blocked by `bind` until we handle it)."""
    asyncio.run(_serve(cfg, bound))
    return 0


def main(cfg: Config) -> int:
    """Bind, report ready, serve: `python -m bubble.netsim` in the current namespace."""
    try:
        bound = bind(cfg.routes)
    except (OSError, SetupError) as err:
        with contextlib.suppress(OSError):
            os.write(cfg.ready_fd, f"error {err}\n".encode())
        return 1
    os.write(cfg.ready_fd, b"ready\n")
    return serve(cfg, bound)
