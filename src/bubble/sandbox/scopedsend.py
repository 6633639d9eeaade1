"""Sends that name their destination, in a run with connect scopes (issue 11, DESIGN §2.4).

A connect scope puts host sockets into the target's hands (`connector.py`), and a host UDP
socket honours any address a send gives it, connected or not. A thread can `dup2` such a
socket onto the descriptor of a pending call after our check, so in a run with connect
scopes no send whose destination is in memory is CONTINUEd:

- on an AF_INET/AF_INET6 datagram socket (a host one we installed, or one inside the wall)
  the supervisor reads every destination and payload once and sends them itself
  (`datagram.py`) when every destination is in a scope; under `--net-sim` a send on a socket
  of the wall whose destinations are all outside every scope is sent by the supervisor on its
  own copy of that socket, so it reaches the simulated internet and nothing else;
- a `sendmsg` on an AF_UNIX stream/seqpacket socket, or on a TCP socket we installed (or, under
  `--net-sim`, one of the wall) is carried out by the supervisor on its copy of the socket it
  checked, payload and passed descriptors read once (`streamsend.py`);
- anything else with an address in memory (`sendmmsg` or `sendto` with an address on a stream
  socket, a datagram socket of another family) is denied: its msg_name would reach a host
  datagram socket swapped in. `send`, `write` and `sendto` without an address are unaffected
  (no address in memory).

Anything else with an out-of-scope destination is denied with an alert, as without scopes.
"""

from __future__ import annotations

import errno
import os

from bubble import events
from bubble.sandbox import _abi, datagram, dnsquery, streamsend
from bubble.sandbox.decide import Decision, alert
from bubble.sandbox.decode import family_name, s32
from bubble.sandbox.sockinfo import INET, SOCK_DGRAM, address, sock_copy, socket_walled
from bubble.sandbox.syscalls import Syscall

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from bubble.sandbox.netpolicy import NetPolicy

SWAPPED = (
    "a run with connect scopes: msg_name could reach a host datagram socket dup2'ed onto this "
    "descriptor after the check (use send or write)"
)
DNS_MESSAGES = 8
STREAMS = (1, 5)  # SOCK_STREAM, SOCK_SEQPACKET: the kernel ignores msg_name on them


def decide(
    net: NetPolicy, row: Syscall, nr: int, pid: int, ctx: dict[str, Any], args: tuple[int, ...]
) -> Decision:
    fd = s32(args[0])
    sock = sock_copy(pid, fd)
    if sock is None:
        # No socket: the kernel answers EBADF or ENOTSOCK whatever memory says; one we may
        # not look at is denied (nothing checked, nothing continued).
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            return Decision.deny(None, errno.EBADF)
        if not link.startswith("socket:"):
            return Decision.deny(None, errno.ENOTSOCK)
        ctx["detail"] = "socket not inspectable"
        return alert(row, nr, pid, ctx)
    walled = socket_walled(sock.fileno())
    host = os.fstat(sock.fileno()).st_ino in net.ours
    kind = sock.type & 0xF
    if (
        row.name == "sendmsg"
        and kind in STREAMS
        and (sock.family == _abi.AF_UNIX or (sock.family in INET and (host or net.policy.net_sim)))
    ):
        # The kernel ignores msg_name here, but a host UDP socket swapped in would not:
        # the supervisor sends the bytes (and descriptors) read once on the socket it checked.
        try:
            return Decision.send(None, streamsend.read_plan(net.decoder.mem, pid, sock, args))
        except datagram.Unsendable as why:
            sock.close()
            ctx["detail"] = why.detail
            return alert(row, nr, pid, ctx, why.err)
    if sock.family not in INET or kind != SOCK_DGRAM or not (walled or host):
        sock.close()
        ctx["detail"] = SWAPPED
        return alert(row, nr, pid, ctx)
    try:
        messages = datagram.read_messages(net.decoder.mem, pid, row.name, args)
    except datagram.Unsendable as why:
        sock.close()
        ctx["detail"] = why.detail
        return alert(row, nr, pid, ctx, why.err)
    if not messages:
        sock.close()
        return Decision.done(None, 0)  # sendmmsg of no message: 0, as the kernel answers
    peer, port = address(sock, "getpeername")
    dests = [(m.peer, m.port) if m.peer is not None else (peer, port) for m in messages]
    if any(p is None or q is None for p, q in dests):
        sock.close()
        return Decision.deny(None, errno.EDESTADDRREQ)  # unconnected, no address: the kernel's
    scopes = [net.scopes.match(str(p), q) if net.scopes else None for p, q in dests]
    # The event names the first destination outside every scope, if any: what was refused.
    shown = next((i for i, scope in enumerate(scopes) if scope is None), 0)
    ctx.update(peer=dests[shown][0], port=dests[shown][1], bytes=len(messages[shown].data))
    ctx.update(family=sock.family, family_name=family_name(sock.family))
    ctx.update(dnsquery.fields([m.data[: dnsquery.MAX_QUERY] for m in messages[:DNS_MESSAGES]]))
    flags = args[2] if row.name == "sendmsg" else args[3]
    plan = datagram.Plan(sock, fd, messages, flags & 0xFFFFFFFF, pid=pid, host=host)
    if row.name == "sendmmsg":
        plan.vector = args[1]
    if all(scopes) and (host or peer is None):
        plan.replace = not host  # an unconnected socket of the wall: ours takes its place
        return Decision.send(_sent(row, nr, pid, ctx, scope=scopes[0]), plan)
    if walled and net.policy.net_sim and (peer is not None or not any(scopes)):
        # The simulated internet: every destination outside the scopes, or a socket already
        # connected inside the wall (it stays there, as its connect did).
        return Decision.send(_sent(row, nr, pid, ctx), plan)
    sock.close()
    if walled and peer is not None and all(scopes):
        ctx["detail"] = "a socket connected inside the wall cannot reach a scope: use a new one"
    elif any(scopes):
        ctx["detail"] = "some destinations are outside every connect scope: nothing sent"
    elif host:
        ctx["detail"] = "a socket on the host's network reaches only the scoped endpoints"
    return alert(row, nr, pid, ctx)


def _sent(row: Syscall, nr: int, pid: int, ctx: dict[str, Any], **extra: Any) -> events.Call:
    return events.Call(
        type=events.NET_SEND, pid=pid, category="net", syscall=row.name, syscall_no=nr,
        decision="ALLOW", **ctx, **extra,
    )  # fmt: skip
