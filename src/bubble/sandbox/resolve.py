"""Resolve a path the way the kernel resolves it for the caller, from the supervisor.

A plain `openat(/proc/PID/root, rest)` follows an absolute symlink, and `..` above the
caller's root, from the *supervisor's* root: the host. Under `--fs-overlay` a symlink in the
layer to `/etc/passwd` would then name the host's file. So every path is resolved with
openat2(2) and RESOLVE_IN_ROOT from the caller's root (absolute symlinks and `..` stay in it,
as they do for the caller), and RESOLVE_NO_MAGICLINKS (a `/proc/.../fd/N` or `/proc/self/root`
link would be read as the *supervisor's*: `/proc/self` is whoever reads it).

A path relative to the caller's cwd or a dirfd becomes a root-relative one: readlink of
`/proc/PID/cwd` (or `fd/N`) prints the directory as the caller sees it when the caller's root
is its mount namespace's root (measured on 6.18: a target in the layer, after pivot_root, with
cwd `/tmp/x`, reads back `/tmp/x`), but a descriptor opened before the switch onto a *host*
directory prints the same kind of text (`/etc`). So the text is resolved again inside the
caller's root and must land on the very same directory (device, inode, mount id); anything
else (a host directory, a deleted one, a race) is `Inexact`, and the caller's call is left to
the kernel.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

from bubble.sandbox._libc import syscall

NR_OPENAT2 = 437
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_IN_ROOT = 0x10
AT_FDCWD = -100
PATH_MAX = 4096
IN_ROOT = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS

# Filesystems whose objects the supervisor may touch for the caller: ordinary disk and memory
# filesystems and the layer. Not procfs (`/proc/self` there is the supervisor), sysfs,
# devtmpfs/devpts (opening a device has effects of its own), cgroupfs, securityfs, ...
# Values: statfs f_type (linux/magic.h).
PLAIN_FS = frozenset(
    {
        0x01021994,  # tmpfs
        0x794C7630,  # overlayfs
        0xEF53,  # ext2/3/4
        0x58465342,  # xfs
        0x9123683E,  # btrfs
        0xF2F52010,  # f2fs
    }
)


class Inexact(Exception):
    """The call cannot be carried out exactly as the kernel would for the caller: leave it
    to the kernel (CONTINUE) and report no result."""


_statfs = ctypes.CDLL("libc.so.6", use_errno=True).fstatfs
_statfs.restype = ctypes.c_int
_statfs.argtypes = [ctypes.c_int, ctypes.c_void_p]
_STATFS_BUF = ctypes.create_string_buffer(120)  # struct statfs: f_type is its first long


def fs_type(fd: int) -> int:
    if _statfs(fd, _STATFS_BUF) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(struct.unpack_from("<q", _STATFS_BUF, 0)[0])


def plain(fd: int) -> None:
    """Raise Inexact unless `fd`'s object lies on a plain filesystem (PLAIN_FS)."""
    if fs_type(fd) not in PLAIN_FS:
        raise Inexact("not a plain filesystem")


def openat2(dirfd: int, path: bytes, flags: int, mode: int = 0, resolve: int = IN_ROOT) -> int:
    """openat2(2); raises OSError like os.open."""
    how = ctypes.create_string_buffer(struct.pack("<QQQ", flags, mode, resolve), 24)
    return syscall(NR_OPENAT2, dirfd, path, ctypes.addressof(how), 24)


_statx = ctypes.CDLL("libc.so.6", use_errno=True).statx
_statx.restype = ctypes.c_int
_statx.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p]
_STATX_BUF = ctypes.create_string_buffer(256)
STATX_INO = 0x100
STATX_MNT_ID = 0x1000
AT_EMPTY_PATH = 0x1000


def identity(fd: int) -> tuple[int, int, int, int, int]:
    """(device major, minor, inode, mount id) of `fd`'s object, in one statx(2) (the mount
    id from /proc/self/fdinfo cost two file reads)."""
    if _statx(fd, b"", AT_EMPTY_PATH, STATX_INO | STATX_MNT_ID, _STATX_BUF) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    # struct statx: stx_ino at 32, stx_dev_major/minor at 136/140, stx_mnt_id at 144.
    (mask,) = struct.unpack_from("<I", _STATX_BUF, 0)
    (ino,) = struct.unpack_from("<Q", _STATX_BUF, 32)
    major, minor = struct.unpack_from("<II", _STATX_BUF, 136)
    (mnt,) = struct.unpack_from("<Q", _STATX_BUF, 144)
    return mask & STATX_MNT_ID, major, minor, ino, mnt


def root_of(pid: int) -> int:
    """Our O_PATH descriptor on the caller's root directory."""
    return os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


def rooted(pid: int, root: int, dirfd: int, raw: bytes) -> bytes:
    """`raw` (as the caller passed it, relative to `dirfd`) as a path from the caller's root.
    Raises Inexact when the start directory cannot be named inside that root."""
    if raw.startswith(b"/"):
        return raw
    link = f"/proc/{pid}/cwd" if dirfd == AT_FDCWD else f"/proc/{pid}/fd/{dirfd}"
    try:
        here = os.open(link, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        if err.errno in (errno.ENOTDIR, errno.EBADF, errno.ENOENT):
            raise OSError(err.errno, "dirfd") from None  # what the kernel answers too
        raise Inexact("start directory") from None
    try:
        text = _named_in_root(pid, root, here, os.readlink(link).encode())
    finally:
        os.close(here)
    full = text.rstrip(b"/") + b"/" + raw
    if len(full) >= PATH_MAX:
        raise Inexact("path too long once made absolute")
    return full


def _named_in_root(pid: int, root: int, here: int, text: bytes) -> bytes:
    """`text` (readlink of the start directory) as a path from the caller's root, checked
    to name the directory `here` holds. Printed from our root when the caller's root is not
    its namespace's (a chroot): then the root's own path is taken off the front."""
    if not text.startswith(b"/") or text.endswith(b" (deleted)"):
        raise Inexact("start directory outside the caller's root")
    if _same(root, here, text):
        return text
    prefix = os.readlink(f"/proc/{pid}/root").encode().rstrip(b"/")
    inner = text[len(prefix) :] or b"/"
    if prefix and (text == prefix or text.startswith(prefix + b"/")) and _same(root, here, inner):
        return inner
    raise Inexact("start directory outside the caller's root")


def _same(root: int, here: int, text: bytes) -> bool:
    """Whether `text`, resolved in the caller's root, is the directory `here` holds."""
    try:
        again = openat2(root, text, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, 0,
                        IN_ROOT | RESOLVE_NO_SYMLINKS)  # fmt: skip
    except OSError:
        return False
    try:
        a = identity(here)
        return bool(a[0]) and a == identity(again)
    finally:
        os.close(again)


def split(path: bytes) -> tuple[bytes, bytes]:
    """(directory, last name) of `path` as the kernel reads it for a call that creates,
    removes or renames the name (trailing slashes dropped)."""
    path = path.rstrip(b"/")
    head, _, base = path.rpartition(b"/")
    if base in (b"", b".", b".."):
        raise OSError(errno.EINVAL, "no name")
    return (head or b"/") if path.startswith(b"/") else (head or b"."), base
