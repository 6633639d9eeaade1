"""Network decisions (DESIGN §2.3): the wall is a network namespace, seccomp is the eyes.

Under `--deny-net=1` the target runs in its own network namespace (`netns.py`), so what a
call may do once let through depends on where the *socket* lives, never on target memory:

- `socket()`: AF_INET/AF_INET6 stream and datagram sockets are created when the caller is
  inside the wall (logged as `net.socket`); every other family is denied, decided on
  registers. Without the wall, every socket but AF_UNIX stream/seqpacket is denied.
- `connect`, `bind`, `listen`, `sendto`/`sendmsg`/`sendmmsg` with an address: denied with an
  alert naming the destination. Two exceptions, both answers that need no trust in memory:
  a UDP connect to port 53 of a socket *inside the wall* is made by the supervisor itself on
  a copy of the socket, with the address it checked (nothing can leave; the query that
  follows is what we want to see), and an AF_UNIX connect to a path that does not exist is
  answered ENOENT, as the kernel would, with an informational `net.connect`.
- A send without an address goes where the socket is connected. On a socket inside the
  wall that can only be the DNS server of a UDP connect we let through: denied, with the
  query decoded. On an AF_UNIX stream/seqpacket socket the kernel ignores msg_name, so it
  goes through without an event. On anything else (a socket from outside the wall, which
  `netns.check_stdio` already refuses at launch; an AF_UNIX datagram socket) a send is
  denied: its msg_name could be written after our check.

With connect scopes (`netscope.py`) an allowed connect is made by the supervisor from the
host's network (`connector.py`), and every send whose destination is in memory is decided by
`scopedsend.py` and, if allowed, made by the supervisor: the target then holds host sockets,
which a thread could dup2 onto any descriptor between our check and the kernel's call.

Which socket an fd is, is asked of the kernel on a copy of the descriptor (`sockinfo.py`).
"""

from __future__ import annotations

import errno
import os

from bubble import events
from bubble.policy import Policy
from bubble.sandbox import _abi, dnsquery, netns, scopedsend
from bubble.sandbox.decide import Decision, alert, observe
from bubble.sandbox.decode import Decoder, family_name, s32
from bubble.sandbox.netscope import ConnectScopes
from bubble.sandbox.sockinfo import (
    INET,
    SOCK_DGRAM,
    SOCK_STREAM,
    sock_copy,
    sock_info,
    socket_walled,
    walled_copy,
)
from bubble.sandbox.syscalls import UNIX_CONNECTED_TYPES, Syscall

TYPE_CHECKING = False  # `typing` costs start-up time; mypy still reads this block
if TYPE_CHECKING:
    from typing import Any

DNS_PORT = 53
DNS_MESSAGES = 8  # messages of one sendmmsg searched for DNS queries (glibc sends two)
_SENDS = frozenset({"sendto", "sendmsg", "sendmmsg"})


def connect_dns(pid: int, fd: int, peer: str, port: int) -> int | None:
    """Connect the target's UDP socket `fd` to `peer`:`port` *ourselves*, on a copy of it,
    if it is a datagram socket inside the wall; the errno (0: connected), or None when the
    socket is not one. Never CONTINUE: between our check and the kernel's connect a thread
    could put another socket under `fd` (dup2) and another address in memory."""
    sock = sock_copy(pid, fd)
    if sock is None:
        return None
    try:
        if sock.type & 0xF != SOCK_DGRAM or not socket_walled(sock.fileno()):
            return None
        if sock.family == _abi.AF_INET6 and "." in peer:
            peer = "::ffff:" + peer  # shown as IPv4 in the event, mapped on the wire
        try:
            sock.connect((peer, port))  # a numeric address: no name is looked up
        except OSError as err:
            return err.errno or errno.EINVAL
        return 0
    finally:
        sock.close()


class NetPolicy:
    """Decides the network calls of one run."""

    def __init__(self, policy: Policy, decoder: Decoder, scopes: ConnectScopes | None) -> None:
        self.policy = policy
        self.decoder = decoder
        self.fallback_said = False
        self.scopes = scopes  # connect scopes, names resolved at start
        self.ours: set[int] = set()  # inodes of host sockets connected for a scope

    def decide(
        self, row: Syscall, nr: int, pid: int, ctx: dict[str, Any], args: tuple[int, ...]
    ) -> Decision:
        if not self.policy.deny_net:
            return _traced(row, nr, pid, ctx, self.policy)
        name = row.name
        if name == "socket":
            return self._socket(row, nr, pid, ctx, args)
        if name == "connect":
            return self._connect(row, nr, pid, ctx, args)
        if name == "listen":
            info = sock_info(pid, s32(args[0]), local=True)
            if info is not None:
                ctx.update(_family(info.family))
                ctx.update(_clean({"peer": info.peer, "port": info.port}))
            return alert(row, nr, pid, ctx)
        if name in _SENDS:
            return self._send(row, nr, pid, ctx, args)
        return alert(row, nr, pid, ctx)  # bind, socketpair

    def _socket(
        self, row: Syscall, nr: int, pid: int, ctx: dict[str, Any], args: tuple[int, ...]
    ) -> Decision:
        family, kind = args[0] & 0xFFFFFFFF, args[1] & 0xF
        if family == _abi.AF_UNIX and kind in UNIX_CONNECTED_TYPES:
            # Reached only through a high-bits domain like (1<<32)|AF_UNIX: the kernel sees
            # AF_UNIX stream, which the policy allows. Decided on registers, not memory.
            return observe(events.NET_SOCKET, row, nr, pid, ctx)
        if family in INET and kind in (SOCK_STREAM, SOCK_DGRAM):
            if netns.walled(pid):
                return observe(events.NET_SOCKET, row, nr, pid, ctx)
            if not self.fallback_said:
                self.fallback_said = True
                why = "the target is not in its own network namespace"
                ctx["detail"] = netns.fallback_note(why)
        return alert(row, nr, pid, ctx)

    def _connect(
        self, row: Syscall, nr: int, pid: int, ctx: dict[str, Any], args: tuple[int, ...]
    ) -> Decision:
        family, peer = ctx.get("family"), str(ctx.get("peer", "<"))
        if family == _abi.AF_UNIX and peer.startswith("/") and _missing(pid, peer):
            # What the kernel would answer: name-service lookups (nscd) are not escapes.
            event = _connect_event(
                row, nr, pid, ctx,
                denied="ENOENT",
                detail="no socket at this path: answered ENOENT as the kernel would",
            )  # fmt: skip
            return Decision.deny(event, errno.ENOENT)
        scope = self.scopes.match(peer, ctx.get("port")) if self.scopes and family in INET else None
        if family in INET and self.policy.net_sim and scope is None:
            if self.scopes is not None:
                # With connect scopes the target may hold host sockets we installed, which a
                # thread could dup2 onto this fd while the kernel's connect is pending: so the
                # supervisor connects its own checked copy of the socket of the wall instead.
                walled = walled_copy(pid, s32(args[0]))
                if walled is not None and isinstance(ctx.get("port"), int):
                    event = _connect_event(row, nr, pid, ctx, decision="ALLOW")
                    return Decision.connect(event, walled)
                if walled is not None:
                    walled.close()
            elif (info := sock_info(pid, s32(args[0]))) is not None and info.walled:
                # --net-sim: the socket lives inside the wall (asked of the kernel, not of
                # memory), so wherever the address points by the time the kernel reads it,
                # it reaches our sinkhole in that namespace and nothing else. CONTINUE even
                # though a thread could dup2 another socket onto the fd meanwhile: without
                # connect scopes the target holds no socket from outside the wall to put
                # there (host sockets are refused as its stdio, every other fd is closed,
                # AF_UNIX connects to host sockets are denied, so none can be received),
                # and a socket it makes is in the wall. A blocking connect done by us would
                # let a full backlog stall the supervisor; the DNS connect below is done by
                # us because it is UDP.
                return observe(events.NET_CONNECT, row, nr, pid, ctx)
        if family in INET and ctx.get("port") == DNS_PORT:
            err = connect_dns(pid, s32(args[0]), peer, DNS_PORT)
            if err is not None:
                ctx["detail"] = "DNS: UDP socket connected by the supervisor inside the wall"
                denied = errno.errorcode.get(err) if err else None
                event = _connect_event(row, nr, pid, ctx, decision="ALLOW", denied=denied)
                return Decision.done(event, err)
        if scope is not None:
            # Made by the supervisor from the host's network on the address read once here
            # (connector.py); the target's own socket stays inside the wall.
            event = _connect_event(row, nr, pid, ctx, decision="ALLOW", scope=scope)
            return Decision.connect(event)
        return alert(row, nr, pid, ctx)

    def _send(
        self, row: Syscall, nr: int, pid: int, ctx: dict[str, Any], args: tuple[int, ...]
    ) -> Decision:
        fd = s32(args[0])
        if self.scopes is not None and (row.name != "sendto" or args[4]):
            return scopedsend.decide(self, row, nr, pid, ctx, args)
        if self.policy.net_sim:
            sim = self._simulated_send(row, nr, pid, ctx, args, fd)
            if sim is not None:
                return sim
        if "peer" in ctx:  # an address, or one we could not read: denied either way
            ctx.update(dnsquery.fields(self._payloads(row, pid, args)))
            return alert(row, nr, pid, ctx)
        info = sock_info(pid, fd)
        if info is None:
            # No socket (the kernel answers ENOTSOCK or EBADF), or one we may not inspect
            # (a non-dumpable target, a non-root supervisor). sendto's NULL address is a
            # register: nothing to rewrite after the check. msg_name is in memory.
            if row.name == "sendto" or not _is_socket(pid, fd):
                return Decision.cont()
            ctx["detail"] = "socket not inspectable: msg_name could change after the check"
            return alert(row, nr, pid, ctx)
        if info.inode in self.ours and (info.type == SOCK_STREAM or row.name == "sendto"):
            # A socket we connected for a scope: TCP ignores any address in a send (so memory
            # cannot redirect it), and sendto's NULL address came from a register.
            return Decision.cont()
        if info.family == _abi.AF_UNIX and (
            info.type in UNIX_CONNECTED_TYPES or row.name == "sendto"
        ):
            # The peer is fixed: the kernel ignores msg_name on connected AF_UNIX stream and
            # seqpacket sockets, and sendto's NULL address came from a register.
            return Decision.cont()
        ctx.update(_family(info.family))
        ctx.update(_clean({"peer": info.peer, "port": info.port}))
        ctx.update(dnsquery.fields(self._payloads(row, pid, args)))
        if info.family == _abi.AF_UNIX:
            ctx["detail"] = "datagram socket: msg_name could change after the check"
        elif not info.walled:
            ctx["detail"] = "socket from outside the network wall"
        return alert(row, nr, pid, ctx)

    def _simulated_send(
        self, row: Syscall, nr: int, pid: int, ctx: dict[str, Any], args: tuple[int, ...], fd: int
    ) -> Decision | None:
        """--net-sim: a send on an AF_INET/AF_INET6 socket inside the wall goes through (the
        sinkhole gets it, nothing else can); one with an address is logged as `net.send`,
        one without is the payload of a connection the capture already records."""
        info = sock_info(pid, fd)
        if info is None or info.family not in INET or not info.walled:
            return None
        if "peer" not in ctx:
            return Decision.cont()
        ctx.update(dnsquery.fields(self._payloads(row, pid, args)))
        return observe(events.NET_SEND, row, nr, pid, ctx)

    def _payloads(self, row: Syscall, pid: int, args: tuple[int, ...]) -> list[bytes]:
        """The first bytes of each message the call sends (bounded), for DNS decoding."""
        limit, dec = dnsquery.MAX_QUERY, self.decoder
        if row.name == "sendto":
            try:
                return [dec.mem.read(pid, args[1], min(args[2], limit))] if args[2] else []
            except OSError:
                return []
        count = min(max(s32(args[2]), 1), DNS_MESSAGES) if row.name == "sendmmsg" else 1
        try:
            msgs = dec.messages(pid, args[1], count, 64 if row.name == "sendmmsg" else 56)
        except OSError:
            return []
        return [dec.first_bytes(pid, msg, limit) for msg in msgs]


def _is_socket(pid: int, fd: int) -> bool:
    """True if fd `fd` of `pid` is a socket, or we cannot tell."""
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
    except OSError:
        return True


def _connect_event(
    row: Syscall, nr: int, pid: int, ctx: dict[str, Any], **extra: Any
) -> events.Call:
    """A `net.connect` event for a connect answered without an alert."""
    return events.Call(
        type=events.NET_CONNECT, pid=pid, category="net", syscall=row.name, syscall_no=nr,
        **ctx, **extra,
    )  # fmt: skip


def _family(family: int) -> dict[str, Any]:
    return {"family": family, "family_name": family_name(family)}


def _clean(ctx: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in ctx.items() if v is not None}


def _missing(pid: int, path: str) -> bool:
    """True if `path` does not exist as the target sees it (its root, not ours)."""
    try:
        os.stat(f"/proc/{pid}/root{path}")
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        return False  # exists but not ours to look at: treated as present
    return False


def _traced(row: Syscall, nr: int, pid: int, ctx: dict[str, Any], policy: Policy) -> Decision:
    """--deny-net=0: here for --trace-net, or a bind under --deny-fs=1 (the allow side of
    that is backed by Landlock's MAKE_SOCK right, which does not depend on memory)."""
    if (
        row.name == "bind"
        and not policy.writes_allowed
        and ctx.get("family") == 1
        and not str(ctx.get("peer", "@")).startswith(("@", "<"))
    ):
        return alert(row, nr, pid, ctx, category="fs")
    kind = {
        "socket": events.NET_SOCKET,
        "connect": events.NET_CONNECT,
        "bind": events.NET_BIND,
    }.get(row.name, events.NET_SEND)
    if "hex" in ctx and kind == events.NET_SEND:
        kind = events.NET_PEEK
    return observe(kind, row, nr, pid, ctx)
