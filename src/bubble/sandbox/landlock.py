"""Landlock, the backstop behind the seccomp filter (DESIGN §2.6).

Seccomp gives the event; Landlock makes sure that whatever seccomp might miss still cannot
write to the filesystem (`--deny-fs=1`), open TCP connections or listeners (`--deny-net=1`,
ABI 4), reach abstract UNIX sockets outside the sandbox (ABI 6), or signal processes outside it
(ABI 6, always: this is what keeps a same-user target from killing the supervisor).
Applied in the child after the privilege drop and before the filter.
"""

from __future__ import annotations

import ctypes
import os
import struct

from bubble.errors import KernelError
from bubble.policy import Policy
from bubble.sandbox import _abi
from bubble.sandbox._libc import syscall

CREATE_RULESET_VERSION = 1

# Filesystem rights that change something (reads and execute stay unhandled, i.e. allowed).
FS_WRITE_FILE = 1 << 1
FS_REMOVE_DIR = 1 << 4
FS_REMOVE_FILE = 1 << 5
FS_MAKE_CHAR = 1 << 6
FS_MAKE_DIR = 1 << 7
FS_MAKE_REG = 1 << 8
FS_MAKE_SOCK = 1 << 9
FS_MAKE_FIFO = 1 << 10
FS_MAKE_BLOCK = 1 << 11
FS_MAKE_SYM = 1 << 12
FS_REFER = 1 << 13  # ABI 2
FS_TRUNCATE = 1 << 14  # ABI 3 (not handled: see plan())
NET_BIND_TCP = 1 << 0  # ABI 4
NET_CONNECT_TCP = 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1

_FS_V1 = (
    FS_WRITE_FILE
    | FS_REMOVE_DIR
    | FS_REMOVE_FILE
    | FS_MAKE_CHAR
    | FS_MAKE_DIR
    | FS_MAKE_REG
    | FS_MAKE_SOCK
    | FS_MAKE_FIFO
    | FS_MAKE_BLOCK
    | FS_MAKE_SYM
)


RULE_PATH_BENEATH = 1
# A write scope grants every handled right but device nodes (they need CAP_MKNOD, which the
# target never has, and a scope is for files); a scope that is a file, only the file rights
# (the kernel refuses directory rights on a file rule).
_SCOPE_DIR_DENY = FS_MAKE_CHAR | FS_MAKE_BLOCK
_FILE_RIGHTS = FS_WRITE_FILE | FS_TRUNCATE
SCOPES_ABI = 3  # REFER (2) keeps links and renames inside; TRUNCATE (3) re-checks truncation


def abi_version() -> int:
    """The kernel's Landlock ABI, 0 when Landlock is absent or disabled."""
    try:
        return syscall(_abi.NR_LANDLOCK_CREATE_RULESET, None, 0, CREATE_RULESET_VERSION)
    except OSError:
        return 0


def plan(policy: Policy, abi: int) -> tuple[int, int, int, list[str]]:
    """(fs rights, net rights, scopes) to handle for `policy` on `abi`, and what is missing."""
    fs = net = scope = 0
    missing: list[str] = []
    if abi <= 0:
        missing = ["Landlock is not available: seccomp alone enforces the policy"]
        if policy.fs_overlay is not None:
            # Without Landlock a target could write host files through another process's
            # /proc/PID/root (same uid); the layer is not offered without its wall.
            raise KernelError(
                "--fs-overlay needs Landlock (Linux >= 5.13, enabled in the LSM list)",
                "enable Landlock, or run with --deny-fs=1",
            )
        if policy.write and policy.deny_fs:
            missing.append("write scopes need Landlock: every scoped write is denied")
        return 0, 0, 0, missing
    if policy.deny_fs or policy.fs_overlay is not None:
        # Under --fs-overlay the same rights are handled and granted back beneath the layer's
        # root only (the child passes "/" as its one writable path), so a write that reaches
        # a host file by any other path (/proc/PID/root, an inherited fd) is refused.
        # TRUNCATE (ABI 3) is left unhandled on purpose: handling it makes *every* open walk
        # the path (+200-340 ns per read-only open, measured in docs/benchmarks.md), and it
        # adds nothing here: ftruncate needs a writable fd, which WRITE_FILE already refuses,
        # and truncate(2) and O_TRUNC opens are denied by the seccomp filter.
        fs = _FS_V1 | (FS_REFER if abi >= 2 else 0)
        if policy.write:
            if abi >= SCOPES_ABI:
                # Scoped writes are let through by the supervisor on a path it read from
                # target memory: the kernel must re-check truncation too, since an O_TRUNC
                # open or truncate(2) whose path is swapped after our check would otherwise
                # pass. The +200-340 ns per open is paid only by runs that use scopes.
                fs |= FS_TRUNCATE
            else:
                missing.append(
                    f"Landlock ABI {abi} < {SCOPES_ABI}: write scopes need the kernel's"
                    " re-check, so every scoped write is denied"
                )
    if policy.deny_net:
        if abi >= 4:
            # --net-sim lets connects through inside the namespace wall, to our sinkhole.
            net = NET_BIND_TCP | (0 if policy.net_sim else NET_CONNECT_TCP)
        else:
            missing.append(f"Landlock ABI {abi} < 4: no TCP backstop")
    if abi >= 6:
        scope = SCOPE_SIGNAL | (SCOPE_ABSTRACT_UNIX_SOCKET if policy.deny_net else 0)
    else:
        missing.append(f"Landlock ABI {abi} < 6: signals and abstract sockets are not scoped")
    return fs, net, scope, missing


def enforces_scopes(policy: Policy, abi: int) -> bool:
    """Whether the kernel enforces `policy`'s write scopes (else they must all be denied)."""
    return bool(policy.write) and policy.deny_fs and abi >= SCOPES_ABI


def restrict(fs: int, net: int, scope: int, writable: tuple[str, ...] = ()) -> None:
    """Create a ruleset handling these rights, with the handled fs rights granted again
    beneath each `writable` path, and enforce it on the calling thread (inherited by
    everything it execs or forks). Needs no_new_privs."""
    if not (fs or net or scope):
        return
    attr = struct.pack("<QQQ", fs, net, scope)
    size = 24 if scope else 16 if net else 8
    buf = ctypes.create_string_buffer(attr[:size], size)
    ruleset = syscall(_abi.NR_LANDLOCK_CREATE_RULESET, ctypes.addressof(buf), size, 0)
    try:
        for path in writable:
            _allow_beneath(ruleset, path, fs)
        syscall(_abi.NR_LANDLOCK_RESTRICT_SELF, ruleset, 0)
    finally:
        os.close(ruleset)


def _allow_beneath(ruleset: int, path: str, fs: int) -> None:
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        is_dir = os.path.isdir(f"/proc/self/fd/{fd}")
        rights = fs & ~_SCOPE_DIR_DENY if is_dir else fs & _FILE_RIGHTS
        # struct landlock_path_beneath_attr is packed: u64 allowed_access, s32 parent_fd.
        attr = ctypes.create_string_buffer(struct.pack("<Qi", rights, fd), 12)
        syscall(_abi.NR_LANDLOCK_ADD_RULE, ruleset, RULE_PATH_BENEATH, ctypes.addressof(attr), 0)
    finally:
        os.close(fd)
