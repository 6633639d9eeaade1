"""Turn a notification's registers (and, bounded, the target's memory) into event fields.

Integer arguments are taken as the kernel takes them: the low 32 bits, signed.
"""

from __future__ import annotations

import struct
from _socket import inet_ntop  # the C module: `socket` costs start-up time

from bubble.events import exact, exact_list
from bubble.sandbox import _abi
from bubble.sandbox.procmem import TargetMemory, fd_path, resolve, unreadable
from bubble.sandbox.syscalls import Syscall

TYPE_CHECKING = False  # `typing` costs start-up time; mypy still reads this block
if TYPE_CHECKING:
    from typing import Any

_ACCMODE = {0: "O_RDONLY", 1: "O_WRONLY", 2: "O_RDWR", 3: "O_ACCMODE"}
_OFLAGS = (
    (0o100, "O_CREAT"),
    (0o200, "O_EXCL"),
    (0o400, "O_NOCTTY"),
    (0o1000, "O_TRUNC"),
    (0o2000, "O_APPEND"),
    (0o4000, "O_NONBLOCK"),
    (0o4010000, "O_SYNC"),
    (0o10000, "O_DSYNC"),
    (0o20000, "O_ASYNC"),
    (0o40000, "O_DIRECT"),
    (0o100000, "O_LARGEFILE"),
    (0o20200000, "O_TMPFILE"),
    (0o200000, "O_DIRECTORY"),
    (0o400000, "O_NOFOLLOW"),
    (0o1000000, "O_NOATIME"),
    (0o2000000, "O_CLOEXEC"),
    (0o10000000, "O_PATH"),
)
O_CREAT = 0o100
O_TMPFILE = 0o20200000
WRITE_INTENT = 0o3 | O_CREAT | 0o1000 | 0o20000000  # O_WRONLY|O_RDWR|O_CREAT|O_TRUNC|__O_TMPFILE

_SOCK_FLAGS = ((0o4000, "SOCK_NONBLOCK"), (0o2000000, "SOCK_CLOEXEC"))


def s32(value: int) -> int:
    """A register as the C `int` the kernel reads from it."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def open_flags(value: int) -> str:
    """Symbolic open(2) flags, e.g. `O_WRONLY|O_CREAT|O_TRUNC`; unknown bits in hex."""
    value &= 0xFFFFFFFF
    names = [_ACCMODE[value & 3]]
    rest = value & ~3
    for bit, name in _OFLAGS:
        if rest & bit == bit:
            names.append(name)
            rest &= ~bit
    if rest:
        names.append(hex(rest))
    return "|".join(names)


def family_name(family: int) -> str:
    return _abi.AF_NAMES.get(family) or f"AF_{family}"


def sock_type(value: int) -> str:
    value &= 0xFFFFFFFF
    base = value & 0xF
    names = [_abi.SOCK_NAMES.get(base) or f"SOCK_{base}"]
    for bit, name in _SOCK_FLAGS:
        if value & bit:
            names.append(name)
    return "|".join(names)


_V4_MAPPED = bytes(10) + b"\xff\xff"


def ip6_text(raw: bytes) -> str:
    """An IPv6 address as text; an IPv4-mapped one (::ffff:a.b.c.d) as the IPv4 address it
    reaches, so one destination reads the same whichever family the program used."""
    if raw[:12] == _V4_MAPPED:
        return inet_ntop(_abi.AF_INET, raw[12:16])
    return inet_ntop(_abi.AF_INET6, raw)


def sockaddr_fields(data: bytes, pid: int) -> dict[str, Any]:
    """peer/port/family/family_name from raw `struct sockaddr` bytes."""
    if len(data) < 2:
        return {"peer": "<short address>"}
    family = struct.unpack_from("<H", data)[0]
    out: dict[str, Any] = {"family": family, "family_name": family_name(family)}
    if family == _abi.AF_INET and len(data) >= 8:
        out["port"] = struct.unpack_from(">H", data, 2)[0]
        out["peer"] = inet_ntop(_abi.AF_INET, data[4:8])
    elif family == _abi.AF_INET6 and len(data) >= 24:
        out["port"] = struct.unpack_from(">H", data, 2)[0]
        out["peer"] = ip6_text(data[8:24])
    elif family == _abi.AF_UNIX:
        name = data[2:]
        if not name:
            out["peer"] = "<unnamed>"
        elif name[0] == 0:
            out["peer"] = "@" + name[1:].decode("utf-8", "backslashreplace")
        else:
            path = name.split(b"\0", 1)[0].decode("utf-8", "backslashreplace")
            out["peer"] = resolve(pid, _abi.AT_FDCWD, path)
    elif family == _abi.AF_NETLINK and len(data) >= 12:
        nl_pid, groups = struct.unpack_from("<II", data, 4)
        out["peer"] = f"netlink:pid={nl_pid},groups={groups:#x}"
    else:
        out["peer"] = data[2:32].hex()
    return out


MMSG_MAX = 1024  # UIO_MAXIOV: the most messages one sendmmsg sends
_MSGHDR = struct.Struct("<QI4xQQ")  # msg_name, msg_namelen, msg_iov, msg_iovlen


class Decoder:
    """Decodes a row's arguments into event fields. One per supervisor (reuses buffers)."""

    def __init__(self) -> None:
        self.mem = TargetMemory()

    def sockaddr(self, pid: int, addr: int, length: int) -> dict[str, Any]:
        if addr == 0:
            return {}
        try:
            data = self.mem.read(pid, addr, min(max(s32(length), 0), 128))
        except OSError as err:
            return {"peer": unreadable(err)}
        return sockaddr_fields(data, pid)

    def messages(self, pid: int, addr: int, count: int, stride: int) -> list[tuple[int, ...]]:
        """(msg_name, msg_namelen, msg_iov, msg_iovlen) of `count` message headers `stride`
        bytes apart (56: struct msghdr; 64: struct mmsghdr), bounded by MMSG_MAX; as many as
        are readable. OSError if none is."""
        count = min(max(count, 1), MMSG_MAX)
        raw = self.mem.read(pid, addr, count * stride)
        return [_MSGHDR.unpack_from(raw, i) for i in range(0, len(raw) - 31, stride)]

    def msghdr(self, pid: int, addr: int, peek: int, vlen: int = 1) -> dict[str, Any]:
        """The first destination (msg_name) among the call's messages and, with `peek`, the
        first bytes of the first iovec. sendmmsg (vlen > 1 possible) is read in full: any
        of its messages may carry an address."""
        try:
            msgs = self.messages(pid, addr, vlen, 64 if vlen > 1 else 56)
        except OSError as err:
            return {"peer": unreadable(err)}
        if not msgs:
            return {"peer": "<short msghdr>"}
        named = next(((name, size) for name, size, _iov, _n in msgs if name and size), None)
        out = self.sockaddr(pid, *named) if named else {}
        if peek:
            out.update(self.iov_payload(pid, msgs[0][2], msgs[0][3], peek))
        return out

    def iov_payload(self, pid: int, iov: int, iovlen: int, peek: int) -> dict[str, Any]:
        """`bytes` and `hex` of the first iovec of a message."""
        if not (iov and iovlen):
            return {"bytes": 0}
        try:
            base, length = struct.unpack_from("<QQ", self.mem.read(pid, iov, 16))
        except (OSError, struct.error):
            return {"bytes": 0}
        return self.payload(pid, base, length, peek)

    def first_bytes(self, pid: int, msg: tuple[int, ...], limit: int) -> bytes:
        """Up to `limit` bytes of the first iovec of a message header (b"" if unreadable)."""
        _name, _size, iov, iovlen = msg
        try:
            base, length = struct.unpack_from("<QQ", self.mem.read(pid, iov, 16))
            return self.mem.read(pid, base, min(length, limit)) if iovlen and length else b""
        except (OSError, struct.error):
            return b""

    def payload(self, pid: int, addr: int, length: int, peek: int) -> dict[str, Any]:
        try:
            data = self.mem.read(pid, addr, min(length, peek))
        except OSError as err:
            return {"bytes": length, "hex": unreadable(err)}
        return {"bytes": length, "hex": data.hex()}

    def open_how(self, pid: int, addr: int) -> tuple[int | None, dict[str, Any]]:
        """openat2's flags (None if unreadable) and fields for the event."""
        try:
            flags, mode, _resolve = struct.unpack_from("<QQQ", self.mem.read(pid, addr, 24))
        except (OSError, struct.error):
            return None, {"flags": "<unreadable open_how>"}
        out: dict[str, Any] = {"flags": open_flags(flags)}
        if flags & (O_CREAT | O_TMPFILE):
            out["mode"] = mode & 0o7777
        return flags, out

    def timex_modes(self, pid: int, addr: int) -> tuple[int | None, dict[str, Any]]:
        """adjtimex/clock_adjtime: the `modes` word of struct timex (None if unreadable; 0
        means the call only reads) and fields for the event."""
        try:
            (modes,) = struct.unpack_from("<I", self.mem.read(pid, addr, 4))
        except (OSError, struct.error) as err:
            text = unreadable(err) if isinstance(err, OSError) else "<short timex>"
            return None, {"detail": f"timex modes {text}"}
        return modes, {"detail": f"timex modes {modes:#x}"}

    def fields(
        self, row: Syscall, pid: int, args: tuple[int, ...], peek: int = 0
    ) -> dict[str, Any]:
        """Event fields for `row` called with register values `args` (`peek`: payload bytes
        to copy for send calls)."""
        out: dict[str, Any] = {}
        dirfd = dirfd2 = _abi.AT_FDCWD
        roles = row.args
        for i, role in enumerate(roles):
            value = args[i]
            if role == "-":
                continue
            if role == "path":
                if row.name == "utimensat" and value == 0:
                    out["path"] = fd_path(pid, dirfd)  # futimens(fd)
                else:
                    out["path"] = resolve(pid, dirfd, self.mem.text(pid, value))
            elif role == "path2":
                out["path2"] = resolve(pid, dirfd2, self.mem.text(pid, value))
            elif role == "dirfd":
                dirfd = s32(value)
            elif role == "dirfd2":
                dirfd2 = s32(value)
            elif role == "mqname":
                out["path"] = "/dev/mqueue/" + self.mem.text(pid, value, 256).lstrip("/")
            elif role == "ltarget":
                out["path2"] = self.mem.text(pid, value)
            elif role == "oflags":
                out["flags"] = open_flags(value)
            elif role == "mode":
                out["mode"] = value & 0o177777
            elif role == "fd":
                out.setdefault("fd", s32(value))
                if row.category == "fs" or row.name == "ioctl":
                    out.setdefault("path", fd_path(pid, s32(value)))
            elif role == "uid":
                out["uid"] = s32(value)
            elif role == "gid":
                out["gid"] = s32(value)
            elif role == "xname":
                out["detail"] = "xattr " + self.mem.text(pid, value, 256)
            elif role == "domain":
                out["family"] = value & 0xFFFFFFFF
                out["family_name"] = out["domain"] = family_name(value & 0xFFFFFFFF)
            elif role == "socktype":
                out["sock_type"] = sock_type(value)
            elif role == "proto":
                out["proto"] = s32(value)
            elif role == "sockaddr":
                out.update(self.sockaddr(pid, value, args[i + 1]))
            elif role == "buf":
                if peek:
                    out.update(self.payload(pid, value, args[i + 1], peek))
                else:
                    out["bytes"] = args[i + 1]
            elif role == "msghdr":
                out.update(self.msghdr(pid, value, peek))
            elif role == "mmsghdr":
                out.update(self.msghdr(pid, value, peek, max(s32(args[i + 1]), 1)))
            elif role == "argv":
                out["argv"] = self.mem.argv(pid, value)
            elif role == "pid":
                out["detail"] = f"pid {s32(value)}"
            elif role == "cmd":
                out["detail"] = f"ioctl request {value & 0xFFFFFFFF:#x}"
        for key in ("path", "path2"):
            text = out.get(key)
            if text is not None and not text.isascii():
                out[key], hexed = exact(text)
                if hexed is not None:
                    out[key + "_hex"] = hexed
        argv = out.get("argv")
        if argv:
            out["argv"], argv_hex = exact_list(argv)
            if argv_hex is not None:
                out["argv_hex"] = argv_hex
        if "oflags" in roles:
            # open(2) mode is meaningful only when a file may be created.
            flags = args[roles.index("oflags")]
            if not flags & (O_CREAT | O_TMPFILE):
                out.pop("mode", None)
        return out
