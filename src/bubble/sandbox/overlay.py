"""`--fs-overlay`: the target sees the host's files through a writable, throwaway layer.

One code path for root and non-root launchers (KERNEL-NOTES fact 16): in a new mount namespace
(with a user namespace unless the target drops to a named user) a size-capped tmpfs holds the
layer; every host directory without mounts below it becomes an overlay (lower: the host
directory, upper: the tmpfs) mounted on a new root in that tmpfs, directories with mounts below
are rebuilt entry by entry, `/proc` and `/sys` are bound read-only, `/dev` holds only the
harmless devices, then `pivot_root` and the old root is detached. Inside a user namespace
`lowerdir=/` fails (its submounts are locked), so per-directory layers are not a workaround for
the unprivileged case but the one layout that works for both.

The layout is planned in the parent (`layerplan.plan`), from the host's view, so it knows which
upper directory stands for which host path when it reads the layer after the run
(`bubble.sandbox.layerscan`). The child hands the tmpfs over as a descriptor (taken with
pidfd_getfd, like the listener): the layer outlives the namespace for exactly as long as the
parent holds it, and nothing is left on the host's disk.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import stat
import struct

from bubble.sandbox import _abi
from bubble.sandbox._libc import libc, syscall, unshare
from bubble.sandbox.layerplan import DEV_LINKS, DEVICES, Layout

CLONE_NEWNS = 0x00020000
MS_NOSUID = 2
MS_NODEV = 4
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
NR_PIVOT_ROOT = 155
NR_MOUNT_SETATTR = 442
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 1

WIDE_MAP = "0 0 65536"  # as root: the usual ids keep their meaning inside the layer


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    result = libc.mount(
        source.encode(),
        target.encode(),
        fstype.encode() if fstype else None,
        ctypes.c_ulong(flags),
        data.encode() if data is not None else None,
    )
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {target}: {os.strerror(err)}")


def _umount(target: str) -> None:
    if libc.umount2(target.encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"umount {target}: {os.strerror(err)}")


def _read_only(target: str) -> None:
    """Make `target` and every mount below it read-only (mount_setattr, 5.12)."""
    attr = struct.pack("<QQQQ", MOUNT_ATTR_RDONLY, 0, 0, 0)  # struct mount_attr: attr_set first
    syscall(NR_MOUNT_SETATTR, _abi.AT_FDCWD, target.encode(), AT_RECURSIVE, attr, len(attr))


def _escape(path: str) -> str:
    return path.replace("\\", "\\\\").replace(",", "\\,").replace(":", "\\:")


def _map_root() -> None:
    """Be uid/gid 0 in a new user namespace (with a new mount namespace). Unprivileged: 0 is
    who we are outside, the only id we may map. As root: ids 0-65535 map to themselves, so
    the layer looks like the host (owners, chown, tar -x) -- only a process outside the new
    namespace may write such a map, so a short-lived helper forked before the unshare does."""
    uid, gid = os.getuid(), os.getgid()
    if uid != 0:
        unshare(_abi.CLONE_NEWUSER | CLONE_NEWNS)
        _write_maps("self", f"0 {uid} 1", f"0 {gid} 1")
        return
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    helper = os.fork()
    if helper == 0:
        code = 1
        try:
            os.close(go_w)
            if os.read(go_r, 1) == b"U":
                _write_maps(str(os.getppid()), WIDE_MAP, WIDE_MAP)
                code = 0
        finally:
            os._exit(code)  # a forked helper must never return into the caller's code
    os.close(go_r)
    try:
        unshare(_abi.CLONE_NEWUSER | CLONE_NEWNS)
        os.write(go_w, b"U")
    finally:
        os.close(go_w)
        _, status = os.waitpid(helper, 0)
    if status != 0:
        raise OSError(1, "could not map the layer's user namespace")


def _write_maps(pid: str, uid_map: str, gid_map: str) -> None:
    for name, text in (("setgroups", "deny"), ("uid_map", uid_map), ("gid_map", gid_map)):
        with open(f"/proc/{pid}/{name}", "w") as fh:
            fh.write(text)


def _stdin_read_only() -> None:
    """A host file given as stdin read-write (`0<>file`) would let the target write it
    through the inherited fd, past the layer: reopen it read-only. Terminals, pipes and
    sockets stay as they are (stdout and stderr are the operator's output, by design)."""
    try:
        st = os.fstat(0)
        writable = fcntl.fcntl(0, fcntl.F_GETFL) & os.O_ACCMODE
    except OSError:
        return  # no stdin
    if writable and not (
        stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode)
    ):
        fd = os.open("/proc/self/fd/0", os.O_RDONLY | os.O_CLOEXEC)
        os.dup2(fd, 0)
        os.close(fd)


def enter(layout: Layout, userns: bool) -> int:
    """Build the layer and switch to it; returns a descriptor of the layer's tmpfs (for the
    parent, closed before exec). Errors name the step, for the child's one-line report."""
    try:
        return _enter(layout, userns)
    except OSError as err:
        hint = "user namespaces and overlayfs must be available (Linux >= 5.11)"
        raise OSError(err.errno, f"--fs-overlay: {err.strerror} (hint: {hint})") from None


def _enter(layout: Layout, userns: bool) -> int:
    """The cwd is kept by path and re-resolved inside the layer."""
    cwd = os.getcwd()
    _stdin_read_only()
    if userns:
        _map_root()
    else:
        unshare(CLONE_NEWNS)
    _mount("none", "/", None, MS_REC | MS_PRIVATE, None)  # nothing propagates to the host
    # The tmpfs goes on /tmp (hidden in this namespace only) and becomes the root for a
    # moment, so the host is reachable as /oldroot while the layer is built.
    _mount("bubble-layer", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={layout.size},mode=0755")
    for d in ("oldroot", "root", "u", "w"):
        os.mkdir(f"/tmp/{d}", 0o755)
    _mount("/tmp/root", "/tmp/root", None, MS_BIND, None)  # pivot_root needs a mount point
    syscall(NR_PIVOT_ROOT, b"/tmp", b"/tmp/oldroot")
    os.chdir("/")
    layer = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    _build(layout)
    _umount("/oldroot")
    os.chdir("/root")
    syscall(NR_PIVOT_ROOT, b".", b".")  # the layer's root on top, the tmpfs's root below it
    _umount(".")  # ... detached: u/ and w/ are out of the target's reach
    try:
        os.chdir(cwd)
    except OSError:
        os.chdir("/")
    return layer


def _like(host: str, ours: str) -> None:
    try:
        st = os.stat(host)
    except OSError:
        return
    with contextlib.suppress(OSError):  # an owner our user namespace does not map: stays ours
        os.chown(ours, st.st_uid, st.st_gid)
    os.chmod(ours, stat.S_IMODE(st.st_mode))


def _build(layout: Layout) -> None:
    root = "/root"
    for path, _mode in layout.dirs:
        os.mkdir(root + path)
        _like("/oldroot" + path, root + path)
    for path, target in layout.links:
        os.symlink(target, root + path)
    for path in layout.files:
        os.close(os.open(root + path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        with contextlib.suppress(OSError):  # unreadable: stays an empty file
            _bind_read_only("/oldroot" + path, root + path, 0)
    for i, path in enumerate(layout.overlays):
        lower = "/oldroot" + path
        os.mkdir(root + path)
        os.mkdir(f"/u/{i}")
        os.mkdir(f"/w/{i}", 0o700)
        # The overlay's root takes mode and owner from the upper directory: the host's.
        _like(lower, f"/u/{i}")
        options = f"lowerdir={_escape(lower)},upperdir=/u/{i},workdir=/w/{i},userxattr"
        try:
            _mount("overlay", root + path, "overlay", MS_NOSUID | MS_NODEV, options)
        except OSError:
            # A filesystem overlayfs cannot sit on: shown read-only, never written.
            with contextlib.suppress(OSError):  # stays an empty directory
                _bind_read_only(lower, root + path, MS_REC)
    _pseudo(root)


def _bind_read_only(source: str, target: str, rec: int) -> None:
    """A bind of host `source` that is read-only, or no bind at all: a bind left writable
    because the second step failed would be a way out of the layer."""
    _mount(source, target, None, MS_BIND | rec, None)
    try:
        _read_only(target)
    except OSError:
        _umount(target)
        raise


def _pseudo(root: str) -> None:
    for name in ("proc", "sys"):
        os.mkdir(f"{root}/{name}", 0o555)
        # Read-only: /proc/sys, /proc/sysrq-trigger, /proc/PID/mem and /sys change the host.
        _bind_read_only(f"/oldroot/{name}", f"{root}/{name}", MS_REC)
    dev = f"{root}/dev"
    os.mkdir(dev, 0o755)
    for name in DEVICES:
        os.close(os.open(f"{dev}/{name}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        try:
            _mount(f"/oldroot/dev/{name}", f"{dev}/{name}", None, MS_BIND, None)
        except OSError:
            os.unlink(f"{dev}/{name}")
    os.mkdir(f"{dev}/pts", 0o755)
    with contextlib.suppress(OSError):  # no terminal devices: programs without a tty still run
        _mount("/oldroot/dev/pts", f"{dev}/pts", None, MS_BIND | MS_REC, None)
    os.mkdir(f"{dev}/shm")
    os.chmod(f"{dev}/shm", 0o1777)  # in the layer, unlike the host's shared /dev/shm
    for name, target in DEV_LINKS.items():
        os.symlink(target, f"{dev}/{name}")
