"""Kernel ABI facts for x86_64: syscall numbers we call ourselves, seccomp structs, ioctls.

Struct layouts follow include/uapi/linux/seccomp.h (sizes as SECCOMP_GET_NOTIF_SIZES reports
them on the kernels we support: notif 80, resp 24, data 64).
"""

import struct

# Syscalls Bubble itself makes through libc's syscall(2).
NR_SECCOMP = 317
NR_PIDFD_SEND_SIGNAL = 424
NR_PIDFD_OPEN = 434
NR_PIDFD_GETFD = 438
NR_LANDLOCK_CREATE_RULESET = 444
NR_LANDLOCK_ADD_RULE = 445
NR_LANDLOCK_RESTRICT_SELF = 446

# seccomp(2) operations and filter flags.
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_GET_ACTION_AVAIL = 2
SECCOMP_GET_NOTIF_SIZES = 3
FILTER_FLAG_LOG = 1 << 1
FILTER_FLAG_NEW_LISTENER = 1 << 3
FILTER_FLAG_WAIT_KILLABLE_RECV = 1 << 5

# Notification ioctls (x86_64 encodings).
IOCTL_NOTIF_RECV = 0xC0502100
IOCTL_NOTIF_SEND = 0xC0182101
IOCTL_NOTIF_ID_VALID = 0x40082102
IOCTL_NOTIF_ADDFD = 0x40182103
IOCTL_NOTIF_SET_FLAGS = 0x40082104
USER_NOTIF_FD_SYNC_WAKE_UP = 1

USER_NOTIF_FLAG_CONTINUE = 1
ADDFD_FLAG_SEND = 2

# struct seccomp_notif: id, pid, flags, then seccomp_data: nr, arch, ip, args[6].
NOTIF = struct.Struct("<QIIiIQ6Q")
NOTIF_SIZE = 80
# struct seccomp_notif_resp: id, val, error, flags.
RESP = struct.Struct("<QqiI")
RESP_SIZE = 24
# struct seccomp_notif_addfd: id, flags, srcfd, newfd, newfd_flags.
ADDFD = struct.Struct("<QIIII")

# Audit architecture tokens (seccomp_data.arch).
AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_I386 = 0x40000003
X32_SYSCALL_BIT = 0x40000000
ARCH_NAMES = {AUDIT_ARCH_X86_64: "x86_64", AUDIT_ARCH_I386: "i386"}

# prctl options.
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36

# Socket families and types (the `socket` module is a start-up cost we avoid).
AF_UNIX, AF_INET, AF_INET6, AF_NETLINK, AF_PACKET = 1, 2, 10, 16, 17
AF_NAMES = {
    0: "AF_UNSPEC",
    1: "AF_UNIX",
    2: "AF_INET",
    3: "AF_AX25",
    4: "AF_IPX",
    5: "AF_APPLETALK",
    9: "AF_X25",
    10: "AF_INET6",
    15: "AF_KEY",
    16: "AF_NETLINK",
    17: "AF_PACKET",
    21: "AF_RDS",
    26: "AF_LLC",
    27: "AF_IB",
    28: "AF_MPLS",
    29: "AF_CAN",
    30: "AF_TIPC",
    31: "AF_BLUETOOTH",
    38: "AF_ALG",
    40: "AF_VSOCK",
    41: "AF_KCM",
    43: "AF_SMC",
    44: "AF_XDP",
}
SOCK_NAMES = {
    1: "SOCK_STREAM",
    2: "SOCK_DGRAM",
    3: "SOCK_RAW",
    4: "SOCK_RDM",
    5: "SOCK_SEQPACKET",
    6: "SOCK_DCCP",
    10: "SOCK_PACKET",
}

# Misc constants.
AT_FDCWD = -100
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
PATH_MAX = 4096
PAGE = 4096
