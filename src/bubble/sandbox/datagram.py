"""UDP sends the supervisor carries out itself (issue 11, DESIGN §2.4): read once, sent once.

A `sendto`/`sendmsg`/`sendmmsg` on a datagram socket names its destination in target memory,
which a thread can rewrite after any check. So the supervisor reads every destination and
every payload once (bounded: 64 KiB a datagram, `MAX_BATCH` messages a call), checks the
destinations it read, and sends *those bytes to those addresses* from a socket it trusts:

- the target's socket is a host socket the supervisor installed for a scope (a copy of it,
  taken with pidfd_getfd and checked on that copy): it sends on the copy;
- the target's socket is an unconnected one inside the wall and every destination is in a
  connect scope: a new socket of the same family, type and protocol in the host's namespace
  takes the descriptor's place (`ADDFD` with `SETFD`, close-on-exec and blocking mode kept,
  a few options copied), and the datagrams leave from it; a reply then reaches the target's
  `recvfrom` on the same descriptor, from the endpoint's real address;
- `--net-sim`: an out-of-scope send on a socket inside the wall goes out on the supervisor's
  copy of that socket, so it can only reach the simulated internet.

What the kernel would refuse is refused with its errno (EFAULT for unreadable memory,
EMSGSIZE, EINVAL, EDESTADDRREQ). Ancillary data is never carried (it could name descriptors
of the supervisor's table). Sends are made with MSG_DONTWAIT so a full send buffer cannot
stall the supervisor: a blocking caller then gets ENOBUFS, which Linux's UDP also returns.
"""

from __future__ import annotations

import _socket
import ctypes
import errno
import os
import struct

from bubble.sandbox import _abi
from bubble.sandbox._libc import libc
from bubble.sandbox.decode import sockaddr_fields
from bubble.sandbox.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from bubble.sandbox.procmem import TargetMemory

MAX_DATAGRAM = 65535  # the most a UDP datagram carries (IPv4 header included: less)
MAX_BATCH = 64  # messages of one sendmmsg carried out; the caller sends the rest again
UIO_MAXIOV = 1024
MAX_SOCKADDR = 128  # sizeof(struct sockaddr_storage): longer is EINVAL, as the kernel says
_MSGHDR = struct.Struct("<QI4xQQQQ")  # name, namelen, iov, iovlen, control, controllen
MSGHDR_SIZE, MMSGHDR_SIZE = 56, 64
# Flags carried over from the caller; the rest (MSG_OOB, MSG_EOR, MSG_ZEROCOPY...) dropped.
PASSED_FLAGS = 0x4 | 0x800 | 0x4000 | 0x8000  # DONTROUTE, CONFIRM, NOSIGNAL, MORE
MSG_DONTWAIT = 0x40
# Options a program sets before its first send that change what it gets back, copied onto the
# host socket that replaces its own: (level, option, size in bytes).
COPIED_OPTIONS = (
    (_socket.SOL_SOCKET, _socket.SO_BROADCAST, 4),
    (_socket.SOL_SOCKET, _socket.SO_PRIORITY, 4),
    (_socket.SOL_SOCKET, _socket.SO_RCVTIMEO, 16),
    (_socket.SOL_SOCKET, _socket.SO_SNDTIMEO, 16),
    (_socket.IPPROTO_IP, _socket.IP_TTL, 4),
    (_socket.IPPROTO_IP, _socket.IP_TOS, 4),
    (_socket.IPPROTO_IPV6, _socket.IPV6_V6ONLY, 4),
    (_socket.IPPROTO_IPV6, _socket.IPV6_UNICAST_HOPS, 4),
    # what recvmsg hands back as ancillary data: IP_PKTINFO, IP_RECVERR, IPV6_RECVPKTINFO,
    # IPV6_RECVERR, SO_TIMESTAMP (numbers: not every Python names them)
    (_socket.IPPROTO_IP, 8, 4),
    (_socket.IPPROTO_IP, 11, 4),
    (_socket.IPPROTO_IPV6, 49, 4),
    (_socket.IPPROTO_IPV6, 25, 4),
    (_socket.SOL_SOCKET, 29, 4),
)


class Unsendable(Exception):
    """The call cannot be carried out: answer `err`; `detail` says why."""

    def __init__(self, err: int, detail: str) -> None:
        super().__init__(detail)
        self.err, self.detail = err, detail


class Message(Record):
    """One datagram as read: its destination (None: the socket's peer) and its bytes."""

    __slots__ = ("data", "peer", "port")
    data: bytes
    peer: str | None
    port: int | None

    def __init__(self, peer: str | None, port: int | None, data: bytes) -> None:
        self._set(peer=peer, port=port, data=data)


class Plan:
    """A send to carry out: on `sock` (the supervisor's checked copy of the target's socket),
    or, with `replace`, on a new host socket installed in place of descriptor `fd`. (Not a
    dataclass: generating one costs every cold `bubble run` about a millisecond; record.py.)"""

    __slots__ = ("fd", "flags", "host", "messages", "pid", "replace", "sock", "vector")

    def __init__(
        self,
        sock: _socket.socket,
        fd: int,
        messages: list[Message],
        flags: int,
        pid: int = 0,
        host: bool = False,
    ) -> None:
        self.sock, self.fd, self.messages, self.flags = sock, fd, messages, flags
        self.pid = pid
        self.host = host  # `sock` is a host socket (one we installed), not one of the wall
        self.replace = False  # make a host socket and install it in place of `fd`
        self.vector = 0  # sendmmsg: where the mmsghdr array is (msg_len is written back)

    def close(self) -> None:
        self.sock.close()


def read_messages(mem: TargetMemory, pid: int, name: str, args: tuple[int, ...]) -> list[Message]:
    """Every message of the call, read once. Unsendable when the kernel would refuse it."""
    if name == "sendto":
        peer, port = _address(mem, pid, args[4], args[5]) if args[4] else (None, None)
        return [Message(peer, port, read_exact(mem, pid, args[1], args[2]))]
    if name == "sendmsg":
        return [_message(mem, pid, headers(mem, pid, args[1], 1, MSGHDR_SIZE)[0])]
    vlen = min(args[2] & 0xFFFFFFFF, MAX_BATCH)
    if not vlen:
        return []
    return [_message(mem, pid, h) for h in headers(mem, pid, args[1], vlen, MMSGHDR_SIZE)]


def headers(
    mem: TargetMemory, pid: int, addr: int, count: int, stride: int
) -> list[tuple[int, ...]]:
    raw = read_exact(mem, pid, addr, count * stride)
    return [_MSGHDR.unpack_from(raw, i * stride) for i in range(count)]


def _message(mem: TargetMemory, pid: int, header: tuple[int, ...]) -> Message:
    name, namelen, iov, iovlen, control, controllen = header
    if control and controllen:
        raise Unsendable(errno.EPERM, "ancillary data (msg_control) is not carried")
    peer, port = _address(mem, pid, name, namelen) if name and namelen else (None, None)
    if iovlen > UIO_MAXIOV:
        raise Unsendable(errno.EMSGSIZE, f"{iovlen} iovecs")
    data = b""
    if iovlen:
        raw = read_exact(mem, pid, iov, iovlen * 16)
        parts = [struct.unpack_from("<QQ", raw, i * 16) for i in range(iovlen)]
        if sum(length for _base, length in parts) > MAX_DATAGRAM:
            raise Unsendable(errno.EMSGSIZE, "datagram larger than 64 KiB")
        data = b"".join(read_exact(mem, pid, base, length) for base, length in parts if length)
    return Message(peer, port, data)


def _address(mem: TargetMemory, pid: int, addr: int, length: int) -> tuple[str | None, int | None]:
    length &= 0xFFFFFFFF
    if length > MAX_SOCKADDR:
        raise Unsendable(errno.EINVAL, f"address length {length}")
    fields = sockaddr_fields(read_exact(mem, pid, addr, length), pid)
    family, port = fields.get("family"), fields.get("port")
    if family not in (_abi.AF_INET, _abi.AF_INET6) or port is None:
        raise Unsendable(errno.EINVAL, f"not an IP address: {fields.get('peer')}")
    if port == 0:
        raise Unsendable(errno.EINVAL, "port 0")
    return str(fields["peer"]), int(port)


def read_exact(mem: TargetMemory, pid: int, addr: int, length: int) -> bytes:
    if length > MAX_DATAGRAM + MAX_BATCH * MMSGHDR_SIZE:
        raise Unsendable(errno.EMSGSIZE, "datagram larger than 64 KiB")
    if not length:
        return b""
    return read_all(mem, pid, addr, length)


def read_all(mem: TargetMemory, pid: int, addr: int, length: int) -> bytes:
    """`length` bytes at `addr`, all of them, or Unsendable EFAULT."""
    try:
        data = mem.read(pid, addr, length)
    except OSError as err:
        raise Unsendable(errno.EFAULT, f"unreadable memory: {err.strerror}") from None
    if len(data) < length:
        raise Unsendable(errno.EFAULT, "memory ends inside the message")
    return data


def carry_out(plan: Plan, install: Callable[[_socket.socket], None]) -> tuple[int, int]:
    """Send the plan's messages. (value, errno) to answer: the byte count of sendto/sendmsg,
    the message count of sendmmsg (errno only when the first one failed)."""
    sock = plan.sock
    if plan.replace:
        sock = _host_twin(plan.sock)
        try:
            install(sock)
        except OSError as exc:
            sock.close()
            return 0, exc.errno or errno.EBADF
    nonblock = bool(plan.flags & MSG_DONTWAIT) or not os.get_blocking(sock.fileno())
    try:
        sent: list[int] = []
        for msg in plan.messages:
            try:
                sent.append(_send_one(sock, msg, plan.flags))
            except OSError as exc:
                err = exc.errno or errno.EIO
                if err == errno.EAGAIN and not nonblock:
                    err = errno.ENOBUFS
                if not sent:
                    return 0, err
                break
    finally:
        if sock is not plan.sock:
            sock.close()
    if plan.vector:
        for i, count in enumerate(sent):
            _write_u32(plan.pid, plan.vector + i * MMSGHDR_SIZE + MSGHDR_SIZE, count)
        return len(sent), 0
    return (sent[0] if sent else 0), 0


def _send_one(sock: _socket.socket, msg: Message, flags: int) -> int:
    flags = flags & PASSED_FLAGS | MSG_DONTWAIT
    if msg.peer is None:
        return sock.send(msg.data, flags)
    peer = msg.peer
    if sock.family == _abi.AF_INET6 and "." in peer:
        peer = "::ffff:" + peer  # the event shows IPv4; the wire needs the mapped form
    return sock.sendto(msg.data, flags, (peer, msg.port))


def _host_twin(walled: _socket.socket) -> _socket.socket:
    """A socket like `walled` (family, type, protocol, blocking mode, options) in our
    namespace, the host's."""
    sock = _socket.socket(walled.family, walled.type & 0xF, walled.proto)
    for level, option, size in COPIED_OPTIONS:
        try:
            sock.setsockopt(level, option, walled.getsockopt(level, option, size))
        except OSError:
            continue  # not for this family
    nonblock = os.get_blocking(walled.fileno()) is False
    os.set_blocking(sock.fileno(), not nonblock)
    return sock


_pvw = libc.process_vm_writev
_pvw.restype = ctypes.c_ssize_t


def _write_u32(pid: int, addr: int, value: int) -> None:
    """sendmmsg's msg_len, written back as the kernel does; ignored if it cannot be."""
    buf = ctypes.c_uint32(value)
    local = (ctypes.c_uint64 * 2)(ctypes.addressof(buf), 4)
    remote = (ctypes.c_uint64 * 2)(addr, 4)
    _pvw(pid, ctypes.byref(local), ctypes.c_ulong(1), ctypes.byref(remote), ctypes.c_ulong(1), 0)
