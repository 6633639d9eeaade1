"""Filesystem calls carried out by the supervisor itself, on the caller's behalf (DESIGN §2.4).

Used where a call must be allowed but a CONTINUE would run it on memory the target can still
change with nothing in the kernel re-checking: chmod and the times calls inside a write scope
(Landlock has no right for them), and any fs call a decision helper answers ALLOW.
The supervisor
1. reads each path from target memory **once** and resolves it from the caller's root, cwd or
   dirfd (`/proc/PID/...`), pinning what it names: its own `O_PATH` descriptor on the object,
   or on the parent directory for calls that create, remove or rename a name; for the fd forms
   a copy of the caller's descriptor (pidfd_getfd);
2. asks `check` about the pinned object's real path (a write scope, or nothing), so a path
   swapped after the read changes nothing: the inode is held;
3. applies the call with the caller's filesystem identity: setfsuid/setfsgid to the caller's
   fsuid/fsgid (from /proc) and no supplementary groups, so the kernel's owner and permission
   checks are the target's, and a root supervisor's CAP_FOWNER, CAP_FSETID, CAP_DAC_OVERRIDE
   leave its effective set while it lasts (setfsuid(2)). Values (modes, flags) come from
   registers; times are copied once from target memory.
An open returns a descriptor for the supervisor to install in the caller (ADDFD).

Hostile input: every pointer may be bad (EFAULT goes back to the caller), a path may name
anything, the caller may be gone (`still_valid` is asked before anything changes).
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from collections.abc import Callable

from bubble.sandbox._libc import libc, pidfd_getfd, pidfd_open, syscall
from bubble.sandbox.procmem import TargetMemory, status_fields

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_REMOVEDIR = 0x200
NR_SETFSUID = 122
NR_SETFSGID = 123

_utimensat = libc.utimensat
_utimensat.restype = ctypes.c_int
_utimensat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int]


class Outside(Exception):
    """`check` refused the pinned object: the call must be denied."""

    def __init__(self, real: str) -> None:
        super().__init__(real)
        self.real = real


class Unsupported(Exception):
    """This call cannot be carried out on the caller's behalf: deny it."""


# name -> (operation, dirfd index or -1, path index, value index or -1, flags index or -1,
#          second dirfd index or -1, second path index or -1).
# Operations: chmod, times (timespec), timeval, utimbuf, open, creat, mkdir, unlink, rmdir,
# rename, link, symlink (path index: the link's text), truncate.
CALLS: dict[str, tuple[str, int, int, int, int, int, int]] = {
    "chmod": ("chmod", -1, 0, 1, -1, -1, -1),
    "fchmod": ("chmod", -2, 0, 1, -1, -1, -1),  # -2: the "path" register is an fd
    "fchmodat": ("chmod", 0, 1, 2, -1, -1, -1),
    "fchmodat2": ("chmod", 0, 1, 2, 3, -1, -1),
    "utime": ("utimbuf", -1, 0, 1, -1, -1, -1),
    "utimes": ("timeval", -1, 0, 1, -1, -1, -1),
    "futimesat": ("timeval", 0, 1, 2, -1, -1, -1),
    "utimensat": ("times", 0, 1, 2, 3, -1, -1),
    "open": ("open", -1, 0, 2, 1, -1, -1),
    "openat": ("open", 0, 1, 3, 2, -1, -1),
    "creat": ("creat", -1, 0, 1, -1, -1, -1),
    "mkdir": ("mkdir", -1, 0, 1, -1, -1, -1),
    "mkdirat": ("mkdir", 0, 1, 2, -1, -1, -1),
    "unlink": ("unlink", -1, 0, -1, -1, -1, -1),
    "unlinkat": ("unlink", 0, 1, -1, 2, -1, -1),
    "rmdir": ("rmdir", -1, 0, -1, -1, -1, -1),
    "rename": ("rename", -1, 0, -1, -1, -1, 1),
    "renameat": ("rename", 0, 1, -1, -1, 2, 3),
    "link": ("link", -1, 0, -1, -1, -1, 1),
    "linkat": ("link", 0, 1, -1, 4, 2, 3),
    "symlink": ("symlink", -1, 0, -1, -1, -1, 1),
    "symlinkat": ("symlink", -1, 0, -1, -1, 1, 2),
    "truncate": ("truncate", -1, 0, 1, -1, -1, -1),
}
# What a write scope lets the supervisor perform (the rest of a scope is Landlock's).
SCOPED = frozenset(
    n for n, spec in CALLS.items() if spec[0] in ("chmod", "times", "timeval", "utimbuf")
)


def carry_out(
    name: str,
    pid: int,
    args: tuple[int, ...],
    mem: TargetMemory,
    check: Callable[[str], str | None] | None,
    still_valid: Callable[[], bool],
) -> tuple[int, str, str | None, int]:
    """Carry out call `name` for `pid`: (errno or 0, real path, what `check` said, new fd or
    -1). Raises Outside when `check` refuses, Unsupported, or OSError when the object cannot
    be pinned (its errno goes back to the caller)."""
    spec = CALLS.get(name)
    if spec is None:
        raise Unsupported(name)
    op, dir_i, path_i, value_i, flags_i, dir2_i, path2_i = spec
    flags = args[flags_i] & 0xFFFFFFFF if flags_i >= 0 else 0
    pins: list[int] = []
    target: tuple[bytes, tuple[int, bytes] | None]
    try:
        if op in ("chmod", "times", "timeval", "utimbuf", "truncate"):
            fd = _pin_object(pid, args, mem, dir_i, path_i, flags & AT_SYMLINK_NOFOLLOW)
            pins.append(fd)
            real = os.readlink(f"/proc/self/fd/{fd}")
            target = (f"/proc/self/fd/{fd}".encode(), None)
        elif op == "symlink":
            text = _cstring(pid, mem, args[path_i])
            parent, base = _pin_parent(pid, args, mem, dir2_i, path2_i)
            pins.append(parent)
            real = _join(parent, base)
            target = (text, (parent, base))
        else:
            parent, base = _pin_parent(pid, args, mem, dir_i, path_i)
            pins.append(parent)
            real = _join(parent, base)
            target = (base, (parent, base))
        verdict = check(real) if check else None
        if check and verdict is None:
            raise Outside(real)
        second = None
        if path2_i >= 0 and op in ("rename", "link"):
            p2, b2 = _pin_parent(pid, args, mem, dir2_i, path2_i)
            pins.append(p2)
            if check and check(_join(p2, b2)) is None:
                raise Outside(_join(p2, b2))
            second = (p2, b2)
        times = (
            _times(op, pid, mem, args[value_i]) if op in ("times", "timeval", "utimbuf") else b""
        )
        caller = _Caller(pid)
        if not still_valid():
            raise OSError(errno.ESRCH, "caller gone")
        with caller:
            try:
                new_fd = _apply(op, target, second, args, value_i, flags, times)
            except OSError as err:
                return err.errno or errno.EPERM, real, verdict, -1
        return 0, real, verdict, new_fd
    finally:
        for fd in pins:
            os.close(fd)


def _apply(
    op: str,
    target: tuple[bytes, tuple[int, bytes] | None],
    second: tuple[int, bytes] | None,
    args: tuple[int, ...],
    value_i: int,
    flags: int,
    times: bytes | None,
) -> int:
    path, at = target
    dirfd, base = at if at else (AT_FDCWD, path)
    if op == "chmod":
        os.chmod(path, args[value_i] & 0o7777)
    elif op in ("times", "timeval", "utimbuf"):
        buf = ctypes.create_string_buffer(times, 32) if times is not None else None
        if _utimensat(AT_FDCWD, path, ctypes.cast(buf, ctypes.c_void_p) if buf else None, 0):
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
    elif op == "truncate":
        os.truncate(path, ctypes.c_int64(args[value_i]).value)
    elif op in ("open", "creat"):
        oflags = flags if op == "open" else os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        return os.open(base, oflags | os.O_CLOEXEC, args[value_i] & 0o7777, dir_fd=dirfd)
    elif op == "mkdir":
        os.mkdir(base, args[value_i] & 0o7777, dir_fd=dirfd)
    elif op == "unlink":
        if flags & AT_REMOVEDIR:
            os.rmdir(base, dir_fd=dirfd)
        else:
            os.unlink(base, dir_fd=dirfd)
    elif op == "rmdir":
        os.rmdir(base, dir_fd=dirfd)
    elif op == "rename" and second:
        os.rename(base, second[1], src_dir_fd=dirfd, dst_dir_fd=second[0])
    elif op == "link" and second:
        follow = bool(flags & 0x400)  # AT_SYMLINK_FOLLOW
        os.link(base, second[1], src_dir_fd=dirfd, dst_dir_fd=second[0], follow_symlinks=follow)
    elif op == "symlink":
        os.symlink(path, base, dir_fd=dirfd)
    return -1


def _cstring(pid: int, mem: TargetMemory, addr: int) -> bytes:
    data, cut = mem.read_cstring(pid, addr)
    if cut:
        raise OSError(errno.ENAMETOOLONG if cut == "ENAMETOOLONG" else errno.EFAULT, cut)
    return data


def _base(pid: int, args: tuple[int, ...], dir_i: int, raw: bytes) -> tuple[str, bytes]:
    """Where the kernel would start resolving `raw` for the caller, and the rest of it."""
    if raw.startswith(b"/"):
        return f"/proc/{pid}/root", raw.lstrip(b"/") or b"."
    dirfd = ctypes.c_int32(args[dir_i] & 0xFFFFFFFF).value if dir_i >= 0 else AT_FDCWD
    return (f"/proc/{pid}/cwd" if dirfd == AT_FDCWD else f"/proc/{pid}/fd/{dirfd}"), raw


def _pin_object(
    pid: int, args: tuple[int, ...], mem: TargetMemory, dir_i: int, path_i: int, nofollow: int
) -> int:
    """Our own descriptor for the object the call names."""
    if dir_i == -2 or (dir_i >= 0 and args[path_i] == 0):  # fchmod(fd), futimens(fd)
        tgid = int(status_fields(pid, "Tgid").get("Tgid", pid))
        pidfd = pidfd_open(tgid)
        try:
            target_fd = args[path_i if dir_i == -2 else dir_i] & 0xFFFFFFFF
            return pidfd_getfd(pidfd, ctypes.c_int32(target_fd).value)
        finally:
            os.close(pidfd)
    raw = _cstring(pid, mem, args[path_i])
    if not raw:
        raise OSError(errno.ENOENT, "empty path")
    start_path, rest = _base(pid, args, dir_i, raw)
    start = os.open(start_path, os.O_PATH | os.O_CLOEXEC | os.O_DIRECTORY)
    try:
        fd = os.open(
            rest, os.O_PATH | os.O_CLOEXEC | (os.O_NOFOLLOW if nofollow else 0), dir_fd=start
        )
    finally:
        os.close(start)
    if nofollow and os.path.islink(f"/proc/self/fd/{fd}"):
        os.close(fd)  # a symlink's own mode or times: not reachable through /proc/self/fd
        raise OSError(errno.EOPNOTSUPP, "symlink")
    return fd


def _pin_parent(
    pid: int, args: tuple[int, ...], mem: TargetMemory, dir_i: int, path_i: int
) -> tuple[int, bytes]:
    """Our descriptor on the directory that holds the name, and the name."""
    raw = _cstring(pid, mem, args[path_i]).rstrip(b"/")
    if not raw:
        raise OSError(errno.ENOENT, "empty path")
    start_path, rest = _base(pid, args, dir_i, raw)
    head, _, base = rest.rpartition(b"/")
    if base in (b"", b".", b".."):
        raise OSError(errno.EINVAL, "no name")
    start = os.open(start_path, os.O_PATH | os.O_CLOEXEC | os.O_DIRECTORY)
    try:
        return os.open(head or b".", os.O_PATH | os.O_CLOEXEC | os.O_DIRECTORY, dir_fd=start), base
    finally:
        os.close(start)


def _join(parent: int, base: bytes) -> str:
    return os.readlink(f"/proc/self/fd/{parent}").rstrip("/") + "/" + os.fsdecode(base)


def _times(op: str, pid: int, mem: TargetMemory, addr: int) -> bytes | None:
    """New times as two struct timespec (None: now), copied once from target memory."""
    if addr == 0:
        return None
    size = 16 if op == "utimbuf" else 32
    data = mem.read(pid, addr, size)
    if len(data) < size:
        raise OSError(errno.EFAULT, "times")
    if op == "times":
        return data
    if op == "timeval":
        a, au, m, mu = struct.unpack("<qqqq", data)
        return struct.pack("<qqqq", a, au * 1000, m, mu * 1000)
    a, m = struct.unpack("<qq", data)
    return struct.pack("<qqqq", a, 0, m, 0)


class _Caller:
    """The caller's filesystem identity, taken for the duration (the supervisor is one
    thread: setfsuid acts on the calling thread only)."""

    def __init__(self, pid: int) -> None:
        st = status_fields(pid, "Uid", "Gid")
        try:
            self.uid = int(st["Uid"].split()[3])
            self.gid = int(st["Gid"].split()[3])
        except (KeyError, IndexError, ValueError):
            raise OSError(errno.ESRCH, "caller gone") from None
        self.groups: list[int] | None = None

    def __enter__(self) -> None:
        if os.geteuid() == 0:
            self.groups = os.getgroups()
            os.setgroups([])
        self.old_gid = syscall(NR_SETFSGID, self.gid)
        self.old_uid = syscall(NR_SETFSUID, self.uid)

    def __exit__(self, *exc: object) -> None:
        syscall(NR_SETFSUID, self.old_uid)
        syscall(NR_SETFSGID, self.old_gid)
        if self.groups is not None:
            os.setgroups(self.groups)
