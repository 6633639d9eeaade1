"""The caller's filesystem identity, taken by the supervisor's thread while it acts for it.

The kernel decides a filesystem call on the caller's fsuid, fsgid, supplementary groups and
effective capabilities -- in the caller's user namespace, where a capability counts over an
inode only if the inode's owner and group are mapped there (capable_wrt_inode_uidgid) -- and
the umask shapes what it creates. The supervisor takes the same: setfsuid/setfsgid (they act
on the calling thread only), setgroups (root), capset of the effective set (per thread), and
the umask (process-wide: the supervisor's other threads create no files).

`exact=True` is for calls whose result is reported (`result`): where the identity cannot be
reproduced (a non-root supervisor cannot set another's groups or raise capabilities; a caller
in another user namespace holding capabilities there, over an inode whose ids that namespace
does not map), `Inexact` is raised and the kernel runs the call itself.
"""

from __future__ import annotations

import ctypes
import errno
import os

from bubble.sandbox._libc import libc, syscall
from bubble.sandbox.caps import _CAPABILITY_VERSION_3, _Data, _Header
from bubble.sandbox.procmem import status_fields
from bubble.sandbox.resolve import Inexact

NR_SETGROUPS = 116
NR_SETFSUID = 122
NR_SETFSGID = 123
# What we keep of a caller's capabilities when it holds them in another user namespace:
# CAP_CHOWN, CAP_FOWNER, CAP_FSETID act on the inodes the call names (capable_wrt_inode_uidgid),
# which we check are mapped there. CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH also act on every
# directory the path walk crosses, which we cannot check: without them we can do no more than
# the caller, and a refusal (EACCES, EPERM) may be ours alone, so it is not reported (`weak`).
WEAK_CAPS = 0b11001


def _userns(pid: int) -> str:
    """`pid`'s user namespace, e.g. `user:[4026531837]` (a readlink: no inode to stat)."""
    try:
        return os.readlink(f"/proc/{pid}/ns/user")
    except OSError:
        raise OSError(errno.ESRCH, "caller gone") from None


_OWN_USERNS = _userns(os.getpid())


def _caps(which: str) -> int:
    """The calling thread's capability set `which` (effective, permitted) as one mask."""
    header = _Header(_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget failed")
    return int(getattr(data[0], which)) | int(getattr(data[1], which)) << 32


_PERMITTED: list[int] = []  # ours, read once: a run never changes it


def _permitted() -> int:
    if not _PERMITTED:
        _PERMITTED.append(_caps("permitted"))
    return _PERMITTED[0]


def _set_effective(mask: int) -> None:
    """Make `mask` the calling thread's effective set."""
    header = _Header(_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget failed")
    data[0].effective = mask & 0xFFFFFFFF
    data[1].effective = mask >> 32
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


def _setgroups(groups: list[int]) -> None:
    """setgroups for the calling thread only: the raw call. glibc's (os.setgroups) signals
    every thread of the process to change theirs too -- 400 us a call here, measured with
    cProfile on a loaded 2-CPU machine, and our other threads are none of the caller's."""
    array = (ctypes.c_uint32 * max(len(groups), 1))(*groups)
    syscall(NR_SETGROUPS, len(groups), ctypes.addressof(array))


_Maps = tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]
# user namespace -> (our descriptor on it, its uid and gid maps). The descriptor keeps the
# namespace alive, so its inode number (the key) cannot name another one later; a map is
# written once per namespace. Reading both maps each call cost 150 us under cProfile here.
_MAPS: dict[str, tuple[int, _Maps]] = {}
MAX_MAPS = 32


def _maps(pid: int, userns: str) -> _Maps:
    known = _MAPS.get(userns)
    if known is not None:
        return known[1]
    fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    try:
        maps = (_ranges(pid, "uid_map"), _ranges(pid, "gid_map"))
        if os.readlink(f"/proc/self/fd/{fd}") != userns or _userns(pid) != userns:
            raise Inexact("the caller changed user namespace meanwhile")
    except BaseException:
        os.close(fd)
        raise
    if len(_MAPS) < MAX_MAPS:
        _MAPS[userns] = (fd, maps)
    else:
        os.close(fd)
    return maps


def _ranges(pid: int, name: str) -> tuple[tuple[int, int], ...]:
    """The ids (as we see them) mapped in `pid`'s user namespace: (first, end) ranges."""
    out = []
    with open(f"/proc/{pid}/{name}", "rb") as fh:
        for line in fh:
            _inside, outside, count = (int(x) for x in line.split())
            out.append((outside, outside + count))
    return tuple(out)


class Caller:
    """Use as a context manager around the call; `mapped` checks an inode's ids."""

    def __init__(self, pid: int, exact: bool = False) -> None:
        st = status_fields(pid, "Uid", "Gid", "Groups", "CapEff", "Umask")
        try:
            self.uid = int(st["Uid"].split()[3])
            self.gid = int(st["Gid"].split()[3])
            self.groups = [int(g) for g in st.get("Groups", "").split()]
            self.caps = int(st["CapEff"], 16)
            self.umask = int(st["Umask"], 8)
        except (KeyError, IndexError, ValueError):
            raise OSError(errno.ESRCH, "caller gone") from None
        self.exact = exact
        self.maps: tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]] | None = None
        self.root = os.geteuid() == 0
        if not exact:
            return
        if not self.root and (self.caps or sorted(self.groups) != sorted(os.getgroups())):
            raise Inexact("a non-root supervisor cannot take these groups or capabilities")
        if self.caps and (userns := _userns(pid)) != _OWN_USERNS:
            # The caller's capabilities count in its namespace only: those the kernel asks
            # the initial namespace about (capable(): CAP_SYS_RESOURCE for ext4's reserved
            # blocks, ...) it does not hold there, so we drop them too, and the DAC ones.
            self.caps &= WEAK_CAPS
            self.maps = _maps(pid, userns)
        if self.caps & ~_permitted():
            raise Inexact("the caller holds capabilities the supervisor does not")

    @property
    def weak(self) -> bool:
        """Whether we act with less than the caller's powers: a refusal is not its result."""
        return self.maps is not None

    def mapped(self, st: os.stat_result) -> None:
        """Raise Inexact if the caller's capabilities would not count over this inode
        (its owner or group unmapped in the caller's user namespace) while ours would."""
        if self.maps is None:
            return
        uids, gids = self.maps
        if not any(a <= st.st_uid < b for a, b in uids) or not any(
            a <= st.st_gid < b for a, b in gids
        ):
            raise Inexact("an inode the caller's capabilities do not cover")

    def __enter__(self) -> Caller:
        groups = self.groups if self.exact else []
        self.saved_groups = None
        if self.root and sorted(groups) != sorted(current := os.getgroups()):
            self.saved_groups = current
        # Before setfsuid, which drops the fs capabilities from the effective set.
        self.saved_caps = _caps("effective") if self.exact else None
        self.saved_umask = os.umask(self.umask) if self.exact else None
        if self.saved_groups is not None:
            _setgroups(groups)
        self.old_gid = syscall(NR_SETFSGID, self.gid)
        self.old_uid = syscall(NR_SETFSUID, self.uid)
        if self.exact:
            # setfsuid fails silently (root's cannot); -1 reads the current value back.
            if not self.root and (
                syscall(NR_SETFSUID, -1) != self.uid or syscall(NR_SETFSGID, -1) != self.gid
            ):
                self.__exit__()
                raise Inexact("could not take the caller's fsuid/fsgid")
            _set_effective(self.caps)  # after setfsuid, which raises or drops the fs ones
        return self

    def __exit__(self, *exc: object) -> None:
        syscall(NR_SETFSUID, self.old_uid)
        syscall(NR_SETFSGID, self.old_gid)
        if self.saved_caps is not None:
            _set_effective(self.saved_caps)
        if self.saved_groups is not None:
            _setgroups(self.saved_groups)
        if self.saved_umask is not None:
            os.umask(self.saved_umask)
