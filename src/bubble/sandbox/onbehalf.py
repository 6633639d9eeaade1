"""Filesystem calls carried out by the supervisor itself, on the caller's behalf (DESIGN §2.4).

Used where a call must be allowed but a CONTINUE would run it on memory the target can still
change with nothing in the kernel re-checking: chmod and the times calls inside a write scope
(Landlock has no right for them), any fs call a decision helper answers ALLOW, and -- to know
what really happened (`result`) -- the calls an allow lets through (`--deny-fs=0`,
`--fs-overlay`; `exact=True`).
The supervisor
1. takes the caller's filesystem identity (identity.py) for everything below, so search
   permission on every directory walked is the caller's too;
2. reads each path from target memory **once** and resolves it as the kernel would for the
   caller: from the caller's root with RESOLVE_IN_ROOT, a cwd- or dirfd-relative path made
   root-relative first (resolve.py), pinning what it names: its own `O_PATH` descriptor on
   the object, or on the parent directory for calls that create, remove or rename a name;
   for the fd forms a copy of the caller's descriptor (pidfd_getfd);
3. asks `check` about the pinned object's real path (a write scope, or nothing), so a path
   swapped after the read changes nothing: the inode is held;
4. applies the call. Values (modes, flags) come from registers; times are copied once.
An open returns a descriptor for the supervisor to install in the caller (ADDFD).

With `exact`, whatever cannot be done exactly as the kernel would do it for the caller raises
`Inexact` before anything changes: the caller's call then runs in the kernel, unreported.
That covers an identity we cannot take, a start directory outside the caller's root, any
failure to resolve (an ENOENT could come from a walk through `/proc/self`, which is ours),
objects off plain filesystems (procfs, sysfs, devices, FIFOs, sockets), flags the kernel
would read differently from openat2, and truncate(2) (it may wait on a lease).

Hostile input: every pointer may be bad (EFAULT goes back to the caller), a path may name
anything, the caller may be gone (`still_valid` is asked before anything changes).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import struct
from collections.abc import Callable

from bubble.sandbox import opening
from bubble.sandbox._libc import libc, syscall
from bubble.sandbox.identity import Caller
from bubble.sandbox.procmem import TargetMemory, copy_fd
from bubble.sandbox.resolve import AT_FDCWD, Inexact, openat2, plain, root_of, rooted, split

AT_SYMLINK_NOFOLLOW = 0x100
AT_REMOVEDIR = 0x200
AT_SYMLINK_FOLLOW = 0x400
NR_RENAMEAT2 = 316

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
    "renameat2": ("rename", 0, 1, -1, 4, 2, 3),
    "link": ("link", -1, 0, -1, -1, -1, 1),
    "linkat": ("link", 0, 1, -1, 4, 2, 3),
    "symlink": ("symlink", -1, 0, -1, -1, -1, 1),
    "symlinkat": ("symlink", -1, 0, -1, -1, 1, 2),
    "truncate": ("truncate", -1, 0, 1, -1, -1, -1),
    # chown: the value index holds the uid, the next register the gid.
    "chown": ("chown", -1, 0, 1, -1, -1, -1),
    "fchown": ("chown", -2, 0, 1, -1, -1, -1),
    "fchownat": ("chown", 0, 1, 2, 4, -1, -1),
}
# What a write scope lets the supervisor perform (the rest of a scope is Landlock's).
SCOPED = frozenset(
    n for n, spec in CALLS.items() if spec[0] in ("chmod", "times", "timeval", "utimbuf")
)
_TIMES = frozenset({"times", "timeval", "utimbuf"})
_OBJECT_OPS = _TIMES | {"truncate", "chmod", "chown"}
# Flags each operation may carry and still be carried out exactly (others: Inexact).
# rename: RENAME_NOREPLACE | RENAME_EXCHANGE (not WHITEOUT: CAP_MKNOD, asked in init_user_ns).
_EXACT_FLAGS = {
    "chmod": AT_SYMLINK_NOFOLLOW,
    "chown": AT_SYMLINK_NOFOLLOW,
    "times": AT_SYMLINK_NOFOLLOW,
    "unlink": AT_REMOVEDIR,
    "rename": 3,
}


def carry_out(
    name: str,
    pid: int,
    args: tuple[int, ...],
    mem: TargetMemory,
    check: Callable[[str], str | None] | None,
    still_valid: Callable[[], bool],
    exact: bool = False,
    inside: Callable[[int], bool] | None = None,
) -> tuple[int, str, str | None, int]:
    """Carry out call `name` for `pid`: (errno or 0, real path, what `check` said, new fd or
    -1). Raises Outside when `check` refuses, Unsupported, Inexact (only with `exact`), or
    OSError when the object cannot be pinned (its errno goes back to the caller). With
    `inside`, only an object call whose pinned descriptor `inside` accepts is carried out
    (Outside otherwise)."""
    spec = CALLS.get(name)
    if spec is None:
        raise Unsupported(name)
    op, _, _, value_i, flags_i, _, _ = spec
    flags = args[flags_i] & 0xFFFFFFFF if flags_i >= 0 else 0
    if op == "creat":
        op, flags = "open", os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    if op == "open" and check is not None:
        raise Unsupported(name)  # an open cannot be checked before it happens
    if exact:
        _exactly(op, flags, pid, args, value_i)
    try:
        root = root_of(pid)
    except OSError:
        raise OSError(errno.ESRCH, "caller gone") from None
    pins = [root]
    try:
        # Memory and /proc/PID are read first, with our own powers (reading another user's
        # memory takes CAP_SYS_PTRACE, which the caller's identity drops).
        try:
            named = _read(op, pid, args, mem, root, spec, pins)
        except OSError:
            if exact:
                raise Inexact("could not name it as the kernel would") from None
            raise
        times = _times(op, pid, mem, args[value_i]) if op in _TIMES else b""
        with Caller(pid, exact) as caller:
            try:
                real, target, second = _pin(op, named, root, caller, exact, pins, flags)
            except OSError:
                if exact:
                    raise Inexact("could not resolve as the kernel would") from None
                raise
            if inside is not None and (op not in _OBJECT_OPS or not inside(pins[-1])):
                raise Outside(real)
            verdict = check(real) if check else None
            if check and verdict is None:
                raise Outside(real)
            if check and second and check(_join(*second)) is None:
                raise Outside(_join(*second))
            if not still_valid():
                raise OSError(errno.ESRCH, "caller gone")
            try:
                if op == "open":
                    fd = opening.open_in(root, target[0], flags, args[value_i], exact)
                    return 0, real, verdict, fd
                _apply(op, target, second, args, value_i, flags, times)
            except OSError as err:
                if exact and caller.weak and err.errno in (errno.EACCES, errno.EPERM):
                    raise Inexact("refused to us, maybe not to the caller") from None
                return err.errno or errno.EPERM, real, verdict, -1
        return 0, real, verdict, -1
    finally:
        for fd in pins:
            os.close(fd)


def _exactly(op: str, flags: int, pid: int, args: tuple[int, ...], value_i: int) -> None:
    """Raise Inexact for what registers alone show we cannot reproduce."""
    if op == "open":
        if flags & ~opening.VALID_OPEN or flags & os.O_PATH:
            raise Inexact("open flags")
    elif flags & ~_EXACT_FLAGS.get(op, 0):
        raise Inexact("flags")
    if op == "truncate":
        # truncate(2) waits for a lease on the file to be given up (lease-break-time, 45 s):
        # the target could hold the supervisor, which must not block. The kernel runs it.
        raise Inexact("truncate")


# What the call names, read from memory and /proc/PID once: the object's descriptor (the fd
# forms), its path from the caller's root, the second path, the symlink's text.
_Named = tuple[int, bytes, bytes, bytes]


def _read(
    op: str,
    pid: int,
    args: tuple[int, ...],
    mem: TargetMemory,
    root: int,
    spec: tuple[str, int, int, int, int, int, int],
    pins: list[int],
) -> _Named:
    _, dir_i, path_i, _, _, dir2_i, path2_i = spec
    if dir_i == -2 or (op in _TIMES and dir_i >= 0 and args[path_i] == 0):
        # fchmod(fd), and a NULL path to utimensat/futimesat (futimens): the dirfd's own
        # object, a copy of the caller's descriptor. (fchmodat's NULL path is EFAULT.)
        target_fd = args[path_i if dir_i == -2 else dir_i] & 0xFFFFFFFF
        fd = copy_fd(pid, ctypes.c_int32(target_fd).value)
        pins.append(fd)
        return fd, b"", b"", b""
    if op == "symlink":
        text = _cstring(pid, mem, args[path_i])
        return -1, _rooted(pid, args, mem, root, dir2_i, path2_i), b"", text
    full = _rooted(pid, args, mem, root, dir_i, path_i)
    full2 = _rooted(pid, args, mem, root, dir2_i, path2_i) if path2_i >= 0 else b""
    return -1, full, full2, b""


def _pin(
    op: str, named: _Named, root: int, caller: Caller, exact: bool, pins: list[int], flags: int
) -> tuple[str, tuple[bytes, tuple[int, bytes] | None], tuple[int, bytes] | None]:
    """(real path, what _apply acts on, the second name), resolved with the caller's
    identity and pinned in `pins`."""
    fd, full, full2, text = named
    if exact:
        _plainly_named(op, flags, fd, full, full2)
    if op in _OBJECT_OPS:
        if fd < 0:
            nofollow = os.O_NOFOLLOW if flags & AT_SYMLINK_NOFOLLOW else 0
            fd = openat2(root, full, os.O_PATH | os.O_CLOEXEC | nofollow)
            pins.append(fd)
            if nofollow and os.path.islink(f"/proc/self/fd/{fd}"):
                # a symlink's own mode or times: not reachable through /proc/self/fd
                raise OSError(errno.EOPNOTSUPP, "symlink")
        _plain(fd, caller, exact)
        return os.readlink(f"/proc/self/fd/{fd}"), (f"/proc/self/fd/{fd}".encode(), None), None
    if op == "open":
        opening.probe(root, full, flags, caller, exact)
        return os.fsdecode(full), (full, None), None
    parent, base = _pin_parent(root, full, caller, exact, pins)
    if op == "symlink":
        return _join(parent, base), (text, (parent, base)), None
    second = None
    if full2 and op in ("rename", "link"):
        second = _pin_parent(root, full2, caller, exact, pins)
    return _join(parent, base), (base, (parent, base)), second


def _plainly_named(op: str, flags: int, fd: int, full: bytes, full2: bytes) -> None:
    """Raise Inexact for names we would read differently from the kernel: a trailing slash
    (only a directory may have one: `unlink("file/")` is ENOTDIR, and we act on the name
    without it), and an O_PATH descriptor given to fchmod/futimens (EBADF)."""
    if fd >= 0 and fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_PATH:
        raise Inexact("an O_PATH descriptor")
    names = op in ("rename", "link", "symlink") or (op == "unlink" and not flags & AT_REMOVEDIR)
    if names and (full.endswith(b"/") or full2.endswith(b"/")):
        raise Inexact("a trailing slash")


def _plain(fd: int, caller: Caller, exact: bool) -> None:
    if exact:
        plain(fd)
        caller.mapped(os.fstat(fd))


def _pin_parent(
    root: int, full: bytes, caller: Caller, exact: bool, pins: list[int]
) -> tuple[int, bytes]:
    """Our descriptor on the directory that holds the name, and the name."""
    head, base = split(full)
    fd = openat2(root, head, os.O_PATH | os.O_CLOEXEC | os.O_DIRECTORY)
    pins.append(fd)
    _plain(fd, caller, exact)
    if caller.maps is not None:  # the name's inode: sticky and hard-link checks read it
        with contextlib.suppress(FileNotFoundError):
            caller.mapped(os.stat(base, dir_fd=fd, follow_symlinks=False))
    return fd, base


def _apply(
    op: str,
    target: tuple[bytes, tuple[int, bytes] | None],
    second: tuple[int, bytes] | None,
    args: tuple[int, ...],
    value_i: int,
    flags: int,
    times: bytes | None,
) -> None:
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
    elif op == "chown":  # -1 (all ones in 32 bits) leaves that id as it is
        os.chown(path, ctypes.c_int32(args[value_i]).value, ctypes.c_int32(args[value_i + 1]).value)
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
        syscall(NR_RENAMEAT2, dirfd, base, second[0], second[1], flags)
    elif op == "link" and second:
        follow = bool(flags & AT_SYMLINK_FOLLOW)
        os.link(base, second[1], src_dir_fd=dirfd, dst_dir_fd=second[0], follow_symlinks=follow)
    elif op == "symlink":
        os.symlink(path, base, dir_fd=dirfd)


def _cstring(pid: int, mem: TargetMemory, addr: int) -> bytes:
    data, cut = mem.read_cstring(pid, addr)
    if cut:
        raise OSError(errno.ENAMETOOLONG if cut == "ENAMETOOLONG" else errno.EFAULT, cut)
    return data


def _rooted(
    pid: int, args: tuple[int, ...], mem: TargetMemory, root: int, dir_i: int, path_i: int
) -> bytes:
    """The path the call names, read once, as a path from the caller's root."""
    raw = _cstring(pid, mem, args[path_i])
    if not raw:
        raise OSError(errno.ENOENT, "empty path")
    dirfd = ctypes.c_int32(args[dir_i] & 0xFFFFFFFF).value if dir_i >= 0 else AT_FDCWD
    return rooted(pid, root, dirfd, raw)


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
