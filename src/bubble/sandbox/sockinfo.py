"""What the kernel says about one of the target's sockets, asked on a copy of it.

Which socket an fd is, is asked of the kernel on a copy of the descriptor (pidfd_getfd), and
whether it is inside the wall of the socket's own namespace (SIOCGSKNS), not the caller's:
a socket keeps the namespace it was made in (KERNEL-NOTES fact 15). A copy is the very
socket the target held when we looked; a thread that dup2s another one onto the fd later
changes what the *fd* names, never what our copy is.
"""

from __future__ import annotations

import _socket
import fcntl
import os

from bubble.sandbox import _abi
from bubble.sandbox.procmem import copy_fd

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SIOCGSKNS = 0x894C  # a socket's network namespace, as a new fd
SOCK_STREAM, SOCK_DGRAM = 1, 2
INET = (_abi.AF_INET, _abi.AF_INET6)


class SockInfo:
    """What the kernel says about one of the target's sockets."""

    __slots__ = ("family", "inode", "peer", "port", "type", "walled")

    def __init__(self, family: int, kind: int, walled: bool, inode: int = 0) -> None:
        self.family, self.type, self.walled, self.inode = family, kind, walled, inode
        self.peer: str | None = None
        self.port: int | None = None


def address(sock: Any, method: str) -> tuple[str | None, int | None]:
    try:
        addr = getattr(sock, method)()
    except OSError:
        return None, None
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = str(addr[0])
        if host.startswith("::ffff:") and "." in host:
            host = host[7:]  # IPv4-mapped: shown as the IPv4 address (see decode.ip6_text)
        return host, int(addr[1])
    return (str(addr) or None), None


def sock_copy(pid: int, fd: int) -> Any:
    """A socket object on a copy of socket `fd` of `pid` (pidfd_getfd), or None when `fd` is
    no socket or we may not take it. The caller closes it (only our copy)."""
    try:
        copy = copy_fd(pid, fd)
    except OSError:
        return None
    try:
        return _socket.socket(fileno=copy)
    except OSError:
        os.close(copy)
        return None


def sock_info(pid: int, fd: int, local: bool = False) -> SockInfo | None:
    """Family, type, wall and peer (or, with `local`, own) address of socket `fd` of `pid`;
    None when `fd` is no socket or we may not look (then callers decide without it)."""
    sock = sock_copy(pid, fd)
    if sock is None:
        return None
    try:
        fd = sock.fileno()
        info = SockInfo(sock.family, sock.type & 0xF, socket_walled(fd), os.fstat(fd).st_ino)
        info.peer, info.port = address(sock, "getsockname" if local else "getpeername")
        return info
    finally:
        sock.close()


def socket_walled(fd: int) -> bool:
    """True if socket `fd` belongs to another network namespace than ours."""
    try:
        ns = fcntl.ioctl(fd, SIOCGSKNS)
    except OSError:
        return False  # not allowed to look (a host socket, as non-root): not inside the wall
    try:
        return os.fstat(ns).st_ino != os.stat("/proc/self/ns/net").st_ino
    finally:
        os.close(ns)


def walled_copy(pid: int, fd: int) -> Any:
    """Our copy of socket `fd` of `pid` if it is an AF_INET/AF_INET6 one inside the wall."""
    sock = sock_copy(pid, fd)
    if sock is not None and (sock.family not in INET or not socket_walled(sock.fileno())):
        sock.close()
        return None
    return sock
