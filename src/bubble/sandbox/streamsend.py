"""`sendmsg` on a stream socket in a run with connect scopes, carried out by the supervisor.

The kernel ignores `msg_name` on a TCP or AF_UNIX stream/seqpacket socket, so such a send used
to CONTINUE; but a scope hands host UDP sockets to the target, and one `dup2`ed onto the
descriptor after the check would honour `msg_name` (`scopedsend.py`). So the supervisor reads
the payload and any descriptors passed (`SCM_RIGHTS`) once, and sends them on its own copy of
the socket it checked, which ignores any address whatever happens to the descriptor.

Bounds: `MAX_STREAM` bytes a call (the caller gets the count sent, as after a signal, and
sends the rest again), `SCM_MAX_FD` descriptors. A blocking caller whose socket cannot take
everything at once waits while a worker thread finishes the send (`connector.py`); the
supervisor keeps serving. Refused: ancillary data other than `SCM_RIGHTS` (credentials would
be the supervisor's), and a descriptor the caller does not hold (EBADF, as the kernel says).
A peer that has gone answers EPIPE; the caller gets no SIGPIPE from us.
"""

from __future__ import annotations

import _socket
import errno
import os
import select
import struct

from bubble.sandbox._libc import pidfd_getfd, pidfd_open
from bubble.sandbox.datagram import MSGHDR_SIZE, Unsendable, headers, read_all, read_exact
from bubble.sandbox.procmem import status_kb

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from bubble.sandbox.procmem import TargetMemory

MAX_STREAM = 1 << 20  # bytes of one call carried out
MAX_CONTROL = 4096  # bytes of ancillary data read
SCM_MAX_FD = 253  # the kernel's own limit of descriptors in one message
UIO_MAXIOV = 1024
SOL_SOCKET, SCM_RIGHTS, AF_UNIX = 1, 1, 1
_CMSG = struct.Struct("<QII")  # cmsg_len, cmsg_level, cmsg_type
PASSED_FLAGS = 0x1 | 0x4 | 0x80 | 0x800 | 0x4000 | 0x8000  # OOB DONTROUTE EOR CONFIRM NOSIGNAL MORE
MSG_DONTWAIT = 0x40
POLL_STEP = 200  # ms between checks that the caller still waits


class StreamPlan:
    """One sendmsg to carry out on `sock`, the supervisor's checked copy of the socket."""

    __slots__ = ("data", "fds", "flags", "sock")

    def __init__(self, sock: _socket.socket, data: bytes, fds: list[int], flags: int) -> None:
        self.sock, self.data, self.flags = sock, data, flags
        self.fds = fds  # our copies of the descriptors passed

    def close(self) -> None:
        self.sock.close()
        for fd in self.fds:
            os.close(fd)
        self.fds = []

    def __del__(self) -> None:
        # A plan never carried out (the caller went away before the answer) still holds
        # copies of its descriptors: closed here, not leaked into the supervisor.
        self.close()


def read_plan(
    mem: TargetMemory, pid: int, sock: _socket.socket, args: tuple[int, ...]
) -> StreamPlan:
    """The payload and descriptors of sendmsg `args`, read once. Unsendable if refused."""
    [header] = headers(mem, pid, args[1], 1, MSGHDR_SIZE)
    name, namelen, iov, iovlen, control, controllen = header
    if name and namelen and sock.family == AF_UNIX:
        raise Unsendable(errno.EISCONN, "an address on a connected AF_UNIX stream socket")
    if iovlen > UIO_MAXIOV:
        raise Unsendable(errno.EMSGSIZE, f"{iovlen} iovecs")
    chunks, left = [], MAX_STREAM
    if iovlen:
        raw = read_exact(mem, pid, iov, iovlen * 16)
        for i in range(iovlen):
            base, length = struct.unpack_from("<QQ", raw, i * 16)
            take = min(length, left)
            if take:
                chunks.append(read_all(mem, pid, base, take))
                left -= take
            if not left:
                break
    fds = _descriptors(mem, pid, control, controllen) if control and controllen else []
    return StreamPlan(sock, b"".join(chunks), fds, args[2] & 0xFFFFFFFF)


def _descriptors(mem: TargetMemory, pid: int, control: int, length: int) -> list[int]:
    if length > MAX_CONTROL:
        raise Unsendable(errno.ENOBUFS, f"{length} bytes of ancillary data")
    raw = read_exact(mem, pid, control, length)
    wanted: list[int] = []
    at = 0
    while at + _CMSG.size <= len(raw):
        size, level, kind = _CMSG.unpack_from(raw, at)
        if size < _CMSG.size or at + size > len(raw):
            raise Unsendable(errno.EINVAL, "malformed ancillary data")
        if (level, kind) != (SOL_SOCKET, SCM_RIGHTS):
            raise Unsendable(errno.EPERM, f"ancillary data {level}/{kind} is not carried")
        count = (size - _CMSG.size) // 4
        wanted += struct.unpack_from(f"<{count}i", raw, at + _CMSG.size)
        at += (size + 7) & ~7
    if len(wanted) > SCM_MAX_FD:
        raise Unsendable(errno.EINVAL, f"{len(wanted)} descriptors")
    copies: list[int] = []
    try:
        pidfd = pidfd_open(status_kb(pid, "Tgid") or pid)
    except OSError as err:
        raise Unsendable(errno.ESRCH, f"caller gone: {err.strerror}") from None
    try:
        for fd in wanted:
            copies.append(pidfd_getfd(pidfd, fd))
    except OSError:
        for fd in copies:
            os.close(fd)
        raise Unsendable(errno.EBADF, "a descriptor passed is not open") from None
    finally:
        os.close(pidfd)
    return copies


def send_now(plan: StreamPlan) -> tuple[int, int, bool]:
    """Send what the socket takes without waiting: (bytes sent, errno, whether a blocking
    caller must wait for the rest)."""
    blocking = not plan.flags & MSG_DONTWAIT and os.get_blocking(plan.sock.fileno())
    try:
        sent = _send(plan, plan.data, with_fds=True)
    except BlockingIOError:
        return 0, (0 if blocking else errno.EAGAIN), blocking
    except OSError as exc:
        return 0, exc.errno or errno.EIO, False
    return sent, 0, blocking and sent < len(plan.data)


def send_rest(plan: StreamPlan, sent: int, waiting: Callable[[], bool]) -> tuple[int, int]:
    """For a blocking caller: send the rest as the socket takes it, while `waiting()`.
    (bytes sent in all, errno if none was)."""
    poller = select.poll()
    poller.register(plan.sock.fileno(), select.POLLOUT)
    while sent < len(plan.data) and waiting():
        if not poller.poll(POLL_STEP):
            continue
        try:
            sent += _send(plan, plan.data[sent:], with_fds=not sent)
        except BlockingIOError:
            continue
        except OSError as exc:
            return (sent, 0) if sent else (0, exc.errno or errno.EIO)
    return sent, 0


def _send(plan: StreamPlan, data: bytes, with_fds: bool) -> int:
    flags = plan.flags & PASSED_FLAGS | MSG_DONTWAIT | 0x4000  # NOSIGNAL: never on us
    ancillary = []
    if with_fds and plan.fds:
        ancillary = [(SOL_SOCKET, SCM_RIGHTS, struct.pack(f"<{len(plan.fds)}i", *plan.fds))]
    return plan.sock.sendmsg([data], ancillary, flags)
