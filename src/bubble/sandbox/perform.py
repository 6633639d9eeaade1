"""Metadata calls that a write scope allows, carried out by the supervisor itself (DESIGN §2.4).

Landlock has no right for chmod or for setting times, so letting such a call CONTINUE on a
path read from target memory would let another thread swap the path for one outside the
scope. Instead the supervisor
1. pins the object: its own `O_PATH` descriptor on the path (read from target memory once and
   resolved from the caller's cwd or dirfd), or a copy of the caller's descriptor (pidfd_getfd)
   for the fd forms;
2. checks that the *pinned* object's real path lies in a scope (a swap after this point
   changes nothing: the inode is held);
3. applies the change with the caller's filesystem identity: setfsuid/setfsgid to the
   caller's fsuid/fsgid (read from /proc) and no supplementary groups, so the kernel's owner
   and permission checks are the target's, and a root supervisor's CAP_FOWNER, CAP_FSETID and
   CAP_DAC_OVERRIDE are out of its effective set while it lasts (setfsuid(2)).
The new values (mode from a register; times copied once from target memory) are ours.

Hostile input: every pointer may be bad (EFAULT goes back to the caller); a path may name
anything; the caller may be gone (the supervisor checks ID_VALID before answering).
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
UTIME_NOW = (1 << 30) - 1
NR_SETFSUID = 122
NR_SETFSGID = 123

_utimensat = libc.utimensat
_utimensat.restype = ctypes.c_int
_utimensat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int]

# name -> (kind, index of the dirfd or -1, index of the path or of the fd, index of the mode or
# times pointer, index of the flags or -1). kind: chmod | times (timespec) | timeval | utimbuf.
PERFORMED: dict[str, tuple[str, int, int, int, int]] = {
    "chmod": ("chmod", -1, 0, 1, -1),
    "fchmod": ("chmod", -2, 0, 1, -1),  # -2: the path index is an fd
    "fchmodat": ("chmod", 0, 1, 2, -1),
    "fchmodat2": ("chmod", 0, 1, 2, 3),
    "utime": ("utimbuf", -1, 0, 1, -1),
    "utimes": ("timeval", -1, 0, 1, -1),
    "futimesat": ("timeval", 0, 1, 2, -1),
    "utimensat": ("times", 0, 1, 2, 3),
}


class Outside(Exception):
    """The pinned object is not in any write scope: the call must be denied."""

    def __init__(self, real: str) -> None:
        super().__init__(real)
        self.real = real


def perform(
    name: str,
    pid: int,
    args: tuple[int, ...],
    mem: TargetMemory,
    scopes: tuple[str, ...],
    still_valid: Callable[[], bool],
) -> tuple[int, str, str]:
    """Carry out call `name` for `pid`. Returns (errno or 0, real path, scope). Raises
    Outside when the object is not in a scope, OSError when it cannot be pinned (the errno
    goes back to the caller). `still_valid` is asked after target memory was read and before
    anything changes: a caller gone meanwhile (its pid maybe reused) gets nothing done."""
    kind, dir_i, path_i, value_i, flags_i = PERFORMED[name]
    flags = args[flags_i] & 0xFFFFFFFF if flags_i >= 0 else 0
    fd = _pin(pid, args, mem, dir_i, path_i, flags)
    try:
        real = os.readlink(f"/proc/self/fd/{fd}")
        scope = _covering(scopes, real)
        if scope is None:
            raise Outside(real)
        times = None if kind == "chmod" else _times(kind, pid, mem, args[value_i])
        caller = _as_caller(pid)
        if not still_valid():
            raise OSError(errno.ESRCH, "caller gone")
        with caller:
            try:
                if kind == "chmod":
                    os.chmod(f"/proc/self/fd/{fd}", args[value_i] & 0o7777)
                else:
                    _set_times(fd, times)
            except OSError as err:
                return err.errno or errno.EPERM, real, scope
        return 0, real, scope
    finally:
        os.close(fd)


def _covering(scopes: tuple[str, ...], real: str) -> str | None:
    for scope in scopes:
        if real == scope or real.startswith(scope.rstrip("/") + "/"):
            return scope
    return None


def _pin(
    pid: int, args: tuple[int, ...], mem: TargetMemory, dir_i: int, path_i: int, flags: int
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
    raw = mem.cstring(pid, args[path_i])
    if not raw:
        raise OSError(errno.ENOENT, "empty path")
    dirfd = ctypes.c_int32(args[dir_i] & 0xFFFFFFFF).value if dir_i >= 0 else AT_FDCWD
    base = f"/proc/{pid}/cwd" if dirfd == AT_FDCWD else f"/proc/{pid}/fd/{dirfd}"
    if raw.startswith(b"/"):
        base = f"/proc/{pid}/root"
        raw = raw.lstrip(b"/") or b"."
    nofollow = os.O_NOFOLLOW if flags & AT_SYMLINK_NOFOLLOW else 0
    start = os.open(base, os.O_PATH | os.O_CLOEXEC | os.O_DIRECTORY)
    try:
        fd = os.open(raw, os.O_PATH | os.O_CLOEXEC | nofollow, dir_fd=start)
    finally:
        os.close(start)
    if nofollow and os.path.islink(f"/proc/self/fd/{fd}"):
        os.close(fd)  # a symlink's own mode/times: rare, and not reachable by path from here
        raise OSError(errno.EOPNOTSUPP, "symlink")
    return fd


def _times(kind: str, pid: int, mem: TargetMemory, addr: int) -> bytes | None:
    """The new times as two struct timespec (None: now), copied once from target memory."""
    if addr == 0:
        return None
    if kind == "times":
        data = mem.read(pid, addr, 32)
        if len(data) < 32:
            raise OSError(errno.EFAULT, "times")
        return data
    if kind == "timeval":
        data = mem.read(pid, addr, 32)
        if len(data) < 32:
            raise OSError(errno.EFAULT, "times")
        a, au, m, mu = struct.unpack("<qqqq", data)
        return struct.pack("<qqqq", a, au * 1000, m, mu * 1000)
    data = mem.read(pid, addr, 16)  # struct utimbuf
    if len(data) < 16:
        raise OSError(errno.EFAULT, "times")
    a, m = struct.unpack("<qq", data)
    return struct.pack("<qqqq", a, 0, m, 0)


def _set_times(fd: int, times: bytes | None) -> None:
    buf = ctypes.create_string_buffer(times, 32) if times is not None else None
    path = f"/proc/self/fd/{fd}".encode()
    if _utimensat(AT_FDCWD, path, ctypes.cast(buf, ctypes.c_void_p) if buf else None, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class _as_caller:
    """Take the caller's filesystem identity for the duration (the supervisor is one thread)."""

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
