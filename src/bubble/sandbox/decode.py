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
        out["peer"] = inet_ntop(_abi.AF_INET6, data[8:24])
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

    def msghdr(self, pid: int, addr: int, peek: int) -> dict[str, Any]:
        """Destination (msg_name) and, with `peek`, the first bytes of the first iovec."""
        try:
            raw = self.mem.read(pid, addr, 56)
            name, namelen, iov, iovlen = struct.unpack_from("<QI4xQQ", raw)
        except (OSError, struct.error) as err:
            return {"peer": unreadable(err) if isinstance(err, OSError) else "<short msghdr>"}
        out = self.sockaddr(pid, name, namelen) if name and namelen else {}
        if peek and iov and iovlen:
            try:
                base, length = struct.unpack_from("<QQ", self.mem.read(pid, iov, 16))
                out.update(self.payload(pid, base, length, peek))
            except (OSError, struct.error):
                out["bytes"] = 0
        return out

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
            elif role in ("msghdr", "mmsghdr"):
                out.update(self.msghdr(pid, value, peek))
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
