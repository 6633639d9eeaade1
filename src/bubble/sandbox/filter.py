"""Turn the syscall table and a policy into BPF, and load it with the raw seccomp() syscall.

Default action ALLOW; every routed syscall goes to USER_NOTIF. Argument checks are made in BPF
only on registers (never on memory), and int arguments are compared on their low 32 bits
(`MASKED_EQ(0xffffffff, v)`): the kernel truncates them, so a full-register `EQ` would let
`socket((1<<32)|AF_INET)` through. Non-native ABIs (i386 `int 0x80`, x32 numbers) hit the
bad-arch action, which we set to NOTIFY so they are denied and logged, never killed.
"""

from __future__ import annotations

import ctypes
import os

from bubble.errors import KernelError
from bubble.policy import Policy
from bubble.sandbox import _abi
from bubble.sandbox import _libseccomp as scmp
from bubble.sandbox._libc import syscall
from bubble.sandbox.syscalls import (
    ADMIN_IOCTLS,
    DENIED_IOCTLS,
    FS_IOC_SET_ENCRYPTION_POLICY,
    FS_IOCTL_TYPES,
    SYSLOG_CHANGES,
    TABLE,
    TTY_IOCTLS,
    UNIX_CONNECTED_TYPES,
    Syscall,
)

LOW32 = 0xFFFFFFFF
O_WRITE_BITS = (os.O_WRONLY, os.O_RDWR, os.O_CREAT, os.O_TRUNC, 0x400000)  # last: __O_TMPFILE
SOCK_TYPE_MASK = 0xF
IOC_WRITE = 0x40000000
IOC_DIR = 0xC0000000


def _eq32(arg: int, value: int) -> scmp.Cmp:
    return (arg, scmp.CMP_MASKED_EQ, LOW32, value & LOW32)


_UNIX_DATAGRAM_TYPES = [t for t in range(16) if t not in UNIX_CONNECTED_TYPES]


def _type(value: int) -> scmp.Cmp:
    return (1, scmp.CMP_MASKED_EQ, SOCK_TYPE_MASK, value)


def _bits(arg: int, bit: int) -> scmp.Cmp:
    return (arg, scmp.CMP_MASKED_EQ, bit, bit)


def conditions(
    row: Syscall, policy: Policy, sup_pid: int, sup_pgid: int, guarded: tuple[int, ...] = ()
) -> list[list[scmp.Cmp]]:
    """The alternatives (OR of AND-lists) under which `row` is notified; [] = not in filter,
    [[]] = always."""
    rule = row.rule
    kind, _, arg = rule.partition(":")
    tracing = policy.trace_net
    if kind in ("fs", "sys", "enosys", "exit"):
        return [[]]
    if kind == "open":
        return [[_bits(int(arg), bit)] for bit in O_WRITE_BITS]
    if kind == "exec":
        return [[]] if policy.notify_exec else []
    if kind == "socket":
        not_unix: list[scmp.Cmp] = [(0, scmp.CMP_NE, _abi.AF_UNIX, 0)]
        if policy.deny_net:
            unix = _eq32(0, _abi.AF_UNIX)
            return [not_unix] + [[unix, _type(t)] for t in _UNIX_DATAGRAM_TYPES]
        return [not_unix] if tracing else []
    if kind == "socketpair":
        return [[_type(t)] for t in _UNIX_DATAGRAM_TYPES] if policy.deny_net else []
    if kind == "pid":
        return [[(int(arg), scmp.CMP_NE, 0, 0)]]
    if kind == "prio":  # "W=U:K": the uid-wide form, or someone else named in register K
        which, _, who = arg.partition(":")
        w, u = which.split("=")
        return [[_eq32(int(w), int(u))], [(int(who), scmp.CMP_NE, 0, 0)]]
    if kind == "adjtime":
        return [[]]
    if kind == "syslog":
        return [[_eq32(0, action)] for action in SYSLOG_CHANGES]
    if kind == "addr":
        watched = policy.deny_net or tracing or (row.name == "bind" and not policy.writes_allowed)
        return [[]] if watched else []
    if kind == "listen":
        return [[]] if policy.deny_net else []
    if kind == "sendto":
        if policy.deny_net or policy.peek_tx:
            return [[]]
        return [[(4, scmp.CMP_NE, 0, 0)]] if tracing else []
    if kind == "msg":
        return [[]] if policy.deny_net or tracing else []
    if kind == "ioctl":
        requests = TTY_IOCTLS | {FS_IOC_SET_ENCRYPTION_POLICY, *DENIED_IOCTLS}
        exact = [[_eq32(1, cmd)] for cmd in sorted(requests)]
        # Administrative families (netdev, block, loop): every request of the type byte.
        admin = [[(1, scmp.CMP_MASKED_EQ, 0xFF00, f.kind << 8)] for f in ADMIN_IOCTLS]
        # Filesystem ioctl families ('f', 'v', 'X'): those that pass data in (_IOW/_IOWR)
        # and those that pass none (_IO) can change an inode through a read-only fd.
        families = [
            [(1, scmp.CMP_MASKED_EQ, mask, value)]
            for letter in FS_IOCTL_TYPES
            for mask, value in (
                (IOC_WRITE | 0xFF00, IOC_WRITE | letter << 8),
                (IOC_DIR | 0xFF00, letter << 8),
            )
        ]
        return exact + families + admin
    if kind == "seccomp":
        return [[_eq32(0, _abi.SECCOMP_SET_MODE_FILTER), _bits(1, _abi.FILTER_FLAG_NEW_LISTENER)]]
    if kind == "signal":
        k = int(arg)
        targets = {sup_pid, -1 & LOW32, *guarded}
        if row.name == "kill":
            targets.add(-sup_pgid & LOW32)
        return [[_eq32(k, t)] for t in sorted(targets)]
    raise KernelError(f"syscall table row {row.name} has unknown rule {rule!r}", "fix syscalls.py")


def build(
    policy: Policy,
    sup_pid: int,
    sup_pgid: int,
    omit: frozenset[str] = frozenset(),
    guarded: tuple[int, ...] = (),
) -> bytes:
    """The filter for `policy` as classic BPF bytes, ready for `load()`. Signals to `sup_pid`,
    its group `sup_pgid` and the `guarded` pids (our keeper) are denied. `omit` names rows to
    leave out (a test hook for proving the Landlock backstop)."""
    with scmp.Filter(scmp.ACT_ALLOW) as f:
        f.attr(scmp.ATTR_ACT_BADARCH, scmp.ACT_NOTIFY)
        f.attr(scmp.ATTR_CTL_NNP, 0)  # we set no_new_privs ourselves, before loading
        for row in TABLE:
            if row.name in omit:
                continue
            for cmps in conditions(row, policy, sup_pid, sup_pgid, guarded):
                f.rule(scmp.ACT_NOTIFY, row.nr, cmps)
        return f.export()


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def load(bpf: bytes, log: bool = False) -> tuple[int, bool]:
    """Install `bpf` on the calling thread with a notification listener.

    Returns (listener fd, whether WAIT_KILLABLE_RECV was granted). no_new_privs must be set.
    """
    buf = ctypes.create_string_buffer(bpf, len(bpf))
    prog = _SockFprog(len(bpf) // 8, ctypes.addressof(buf))
    base = _abi.FILTER_FLAG_NEW_LISTENER | (_abi.FILTER_FLAG_LOG if log else 0)
    try:
        fd = syscall(
            _abi.NR_SECCOMP,
            _abi.SECCOMP_SET_MODE_FILTER,
            base | _abi.FILTER_FLAG_WAIT_KILLABLE_RECV,
            ctypes.addressof(prog),
        )
        return fd, True
    except OSError as err:
        if err.errno != 22:  # EINVAL: this kernel predates WAIT_KILLABLE_RECV
            raise
    fd = syscall(_abi.NR_SECCOMP, _abi.SECCOMP_SET_MODE_FILTER, base, ctypes.addressof(prog))
    return fd, False
