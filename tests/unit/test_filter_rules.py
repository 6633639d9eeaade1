"""Truth tables of the filter's rule conditions (`sandbox/filter.py::conditions`, issue 11
item 7): which calls, with which register values, reach the supervisor under which policy.

`conditions()` returns alternatives (OR) of comparisons (AND) that libseccomp compiles to BPF;
`notified()` evaluates them the way libseccomp does (64-bit register values: CMP_NE is
`reg != a`, CMP_MASKED_EQ is `reg & a == b`). The tables are the specification."""

from __future__ import annotations

import os

import pytest

from bubble.errors import KernelError
from bubble.policy import Policy
from bubble.sandbox import _abi
from bubble.sandbox import _libseccomp as scmp
from bubble.sandbox.filter import conditions
from bubble.sandbox.syscalls import BY_NAME, TABLE, Syscall

SUP_PID, SUP_PGID, KEEPER = 4242, 4240, 4300
U64 = (1 << 64) - 1

POLICIES = {
    "seed": Policy(),  # --deny-fs=1 --deny-net=1
    "net-open": Policy(deny_net=False),
    "trace": Policy(deny_net=False, trace_net=True),
    "peek": Policy(deny_net=False, trace_net=True, peek_tx=16),
    "all-open": Policy(deny_fs=False, deny_net=False),
    "layer": Policy(deny_net=False, fs_overlay=""),
    "exec": Policy(notify_exec=True),
}
COLUMNS = tuple(POLICIES)


def notified(row: Syscall, policy: Policy, regs: tuple[int, ...]) -> bool:
    alternatives = conditions(row, policy, SUP_PID, SUP_PGID, (KEEPER,))
    regs = tuple(r & U64 for r in regs) + (0,) * (6 - len(regs))

    def holds(cmp: scmp.Cmp) -> bool:
        arg, op, a, b = cmp
        if op == scmp.CMP_NE:
            return regs[arg] != a
        assert op == scmp.CMP_MASKED_EQ, cmp
        return regs[arg] & a == b

    return any(all(holds(c) for c in alt) for alt in alternatives)


AF_INET, AF_UNIX, AF_PACKET = 2, 1, 17
STREAM, DGRAM, SEQPACKET = 1, 2, 5
O_TMPFILE = 0o20000000 | os.O_DIRECTORY
CLOEXEC = 0x80000
ENC_POLICY, FS_IOC_SETFLAGS, FS_IOC_GETFLAGS = 0x800C6613, 0x40086602, 0x80086601
FS_IOC_SHUTDOWN = 0x8004587D  # 'X' _IOR: an inode-level change through a read-only fd

# (row, registers, one letter per column: Y notified, - not)
TABLE_ROWS = [
    # opens: only a write, create, truncate or tmpfile bit brings them to the supervisor
    ("openat", (-100, 0, os.O_RDONLY), "- - - - - - -"),
    ("openat", (-100, 0, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW), "- - - - - - -"),
    ("openat", (-100, 0, os.O_WRONLY), "Y Y Y Y Y Y Y"),
    ("openat", (-100, 0, os.O_RDWR), "Y Y Y Y Y Y Y"),
    ("openat", (-100, 0, os.O_CREAT), "Y Y Y Y Y Y Y"),
    ("openat", (-100, 0, os.O_TRUNC), "Y Y Y Y Y Y Y"),
    ("openat", (-100, 0, O_TMPFILE), "Y Y Y Y Y Y Y"),
    ("open", (0, os.O_WRONLY | os.O_APPEND), "Y Y Y Y Y Y Y"),
    ("open", (0, os.O_RDONLY, os.O_WRONLY), "- - - - - - -"),  # mode is not flags
    ("creat", (0, 0o644), "Y Y Y Y Y Y Y"),
    ("openat2", (-100, 0, 0), "Y Y Y Y Y Y Y"),  # flags in memory: always
    ("unlink", (0,), "Y Y Y Y Y Y Y"),
    # sockets: under the wall every family but AF_UNIX, and AF_UNIX datagram ones
    ("socket", (AF_INET, STREAM), "Y - Y Y - - Y"),
    ("socket", (AF_INET, DGRAM | CLOEXEC), "Y - Y Y - - Y"),
    ("socket", (AF_PACKET, 3), "Y - Y Y - - Y"),
    ("socket", (AF_UNIX, STREAM), "- - - - - - -"),
    ("socket", (AF_UNIX, SEQPACKET | CLOEXEC), "- - - - - - -"),
    ("socket", (AF_UNIX, DGRAM), "Y - - - - - Y"),
    ("socket", ((1 << 32) | AF_UNIX, STREAM), "Y - Y Y - - Y"),  # high bits: not AF_UNIX
    ("socket", ((1 << 32) | AF_INET, STREAM), "Y - Y Y - - Y"),
    ("socketpair", (AF_UNIX, STREAM), "- - - - - - -"),
    ("socketpair", (AF_UNIX, DGRAM), "Y - - - - - Y"),
    ("connect", (3, 0, 16), "Y - Y Y - - Y"),
    ("bind", (3, 0, 16), "Y Y Y Y - - Y"),  # a named AF_UNIX bind writes the filesystem
    ("listen", (3, 5), "Y - - - - - Y"),
    ("sendto", (3, 0, 5, 0, 0, 0), "Y - - Y - - Y"),  # no address: a DNS query or peek
    ("sendto", (3, 0, 5, 0, 0x7000, 16), "Y - Y Y - - Y"),
    ("sendmsg", (3, 0, 0), "Y - Y Y - - Y"),
    ("sendmmsg", (3, 0, 2, 0), "Y - Y Y - - Y"),
    ("execve", (0, 0, 0), "- - - - - - Y"),
    # privileged calls: always
    ("mount", (), "Y Y Y Y Y Y Y"),
    ("bpf", (), "Y Y Y Y Y Y Y"),
    ("io_uring_setup", (), "Y Y Y Y Y Y Y"),
    ("adjtimex", (0,), "Y Y Y Y Y Y Y"),
    ("exit_group", (0,), "Y Y Y Y Y Y Y"),
    # signals: only those that reach the supervisor, its group, every process, the keeper
    ("kill", (SUP_PID, 9), "Y Y Y Y Y Y Y"),
    ("kill", (-SUP_PGID, 9), "Y Y Y Y Y Y Y"),
    ("kill", (-1, 9), "Y Y Y Y Y Y Y"),
    ("kill", (KEEPER, 9), "Y Y Y Y Y Y Y"),
    ("kill", (SUP_PID + (1 << 32), 9), "Y Y Y Y Y Y Y"),  # the kernel reads 32 bits
    ("kill", (1234, 9), "- - - - - - -"),
    ("kill", (0, 9), "- - - - - - -"),  # the caller's own group
    ("tgkill", (SUP_PID, SUP_PID, 9), "Y Y Y Y Y Y Y"),
    ("tgkill", (-SUP_PGID, 1, 9), "- - - - - - -"),  # no group form
    ("pidfd_open", (SUP_PID, 0), "Y Y Y Y Y Y Y"),
    # another process named: notified; the caller itself (0): not
    ("prlimit64", (0, 7), "- - - - - - -"),
    ("prlimit64", (99, 7), "Y Y Y Y Y Y Y"),
    ("sched_setattr", (0, 0, 0), "- - - - - - -"),
    ("setpriority", (0, 0, 10), "- - - - - - -"),  # PRIO_PROCESS, self
    ("setpriority", (0, 99, 10), "Y Y Y Y Y Y Y"),
    ("setpriority", (2, 0, 10), "Y Y Y Y Y Y Y"),  # PRIO_USER: every process of the uid
    ("ioprio_set", (3, 0, 0), "Y Y Y Y Y Y Y"),  # IOPRIO_WHO_USER
    ("ioprio_set", (1, 0, 0), "- - - - - - -"),
    ("syslog", (3, 0, 0), "- - - - - - -"),  # READ_ALL: the kernel's dmesg_restrict decides
    ("syslog", (5, 0, 0), "Y Y Y Y Y Y Y"),  # CLEAR
    ("syslog", (8, 0, 3), "Y Y Y Y Y Y Y"),  # CONSOLE_LEVEL
    ("seccomp", (_abi.SECCOMP_SET_MODE_FILTER, _abi.FILTER_FLAG_NEW_LISTENER, 0), "Y Y Y Y Y Y Y"),
    ("seccomp", (_abi.SECCOMP_SET_MODE_FILTER, 0, 0), "- - - - - - -"),  # a plain filter
    ("seccomp", (0, _abi.FILTER_FLAG_NEW_LISTENER, 0), "- - - - - - -"),  # STRICT
    # ioctls: terminal injection, writing filesystem families, administrative families
    ("ioctl", (0, 0x5412, 0), "Y Y Y Y Y Y Y"),  # TIOCSTI
    ("ioctl", (0, 0x541B, 0), "- - - - - - -"),  # FIONREAD
    ("ioctl", (0, 0x5401, 0), "- - - - - - -"),  # TCGETS
    ("ioctl", (0, FS_IOC_SETFLAGS, 0), "Y Y Y Y Y Y Y"),
    ("ioctl", (0, FS_IOC_GETFLAGS, 0), "- - - - - - -"),  # _IOR 'f': reads
    ("ioctl", (0, ENC_POLICY, 0), "Y Y Y Y Y Y Y"),  # an _IOR that sets
    ("ioctl", (0, FS_IOC_SHUTDOWN, 0), "Y Y Y Y Y Y Y"),
    ("ioctl", (0, 0x8912, 0), "Y Y Y Y Y Y Y"),  # SIOCGIFCONF: netdev, decided on the request
    ("ioctl", (0, 0x125F, 0), "Y Y Y Y Y Y Y"),  # BLKRRPART
    ("ioctl", (0, 0x4C80, 0), "Y Y Y Y Y Y Y"),  # LOOP_CTL_ADD
    ("ioctl", (0, (1 << 32) | 0x541B, 0), "- - - - - - -"),  # 32 bits compared
    ("ioctl", (0, (1 << 32) | 0x5412, 0), "Y Y Y Y Y Y Y"),
]


@pytest.mark.parametrize(("name", "regs", "expected"), TABLE_ROWS)
def test_filter_truth_table(name, regs, expected):
    row = BY_NAME[name]
    got = ["Y" if notified(row, POLICIES[col], regs) else "-" for col in COLUMNS]
    assert dict(zip(COLUMNS, got, strict=True)) == dict(zip(COLUMNS, expected.split(), strict=True))


def test_every_row_has_a_rule_under_every_policy():
    """Exhaustive over the syscall table and the policy columns: each row compiles to
    comparisons on the six registers only, with the two operators the filter uses; rows
    that must reach the supervisor whatever the policy do."""
    always = {"fs", "sys", "enosys", "exit", "adjtime"}
    for row in TABLE:
        for col, policy in POLICIES.items():
            alts = conditions(row, policy, SUP_PID, SUP_PGID, (KEEPER,))
            for alt in alts:
                for arg, op, _a, _b in alt:
                    assert 0 <= arg < 6 and op in (scmp.CMP_NE, scmp.CMP_MASKED_EQ), row.name
            if row.rule.split(":")[0] in always:
                assert alts == [[]], (row.name, col)


def test_an_unknown_rule_is_an_error_naming_the_row():
    row = Syscall("made_up", 999, "sys", (), "nonsense")
    with pytest.raises(KernelError, match="made_up"):
        conditions(row, Policy(), SUP_PID, SUP_PGID)
