"""THE syscall table: every mediated x86_64 system call, its category, its argument roles and
the rule that routes it to the supervisor. The filter (`filter.py`), the decoder
(`decode.py`), the decision (`decide.py`), the docs (`docs/syscalls.md`) and the coverage test
all read this one table.

Argument roles (one per register, in order):
  path, path2      a NUL-terminated path in target memory (path2: second path, e.g. rename's new)
  ltarget          a symlink's contents (a string, not resolved)
  dirfd, dirfd2    directory fd that a following relative path is resolved against
  fd               a file descriptor the call acts on
  oflags, mode     open(2) flags / permission bits
  how              pointer to struct open_how (openat2)
  uid, gid         chown owners
  xname            an extended attribute's name (string)
  mqname           a POSIX message queue name (reported as /dev/mqueue/NAME)
  sockaddr         pointer to a socket address, length in the next register
  domain, socktype, proto   socket(2) arguments
  buf, len         a payload pointer and its length (sendto)
  msghdr, mmsghdr  pointer to struct msghdr / struct mmsghdr array
  argv             pointer to a NULL-terminated array of strings (exec)
  pid, cmd         a process id / an ioctl request number
  -                not decoded

Rules (what puts the call in the filter; see filter.py):
  fs          always notified: denied under --deny-fs=1, logged as fs.write under --deny-fs=0
  open:K      notified when register K has a write, create, truncate or tmpfile bit
  exec        notified with --notify-exec, then CONTINUE
  socket      under --deny-net=1 every family but AF_UNIX, and AF_UNIX datagram sockets;
              with --trace-net every family but AF_UNIX
  socketpair  under --deny-net=1 AF_UNIX datagram pairs
  addr        notified under --deny-net=1 or --trace-net (bind also under --deny-fs=1)
  listen      notified under --deny-net=1 (listen on an unbound socket binds it)
  sendto      under --deny-net=1 always (a send on a connected socket may be a DNS query);
              with --trace-net when a destination address is given (or always with --peek-tx)
  msg         notified under --deny-net=1 (msg_name may address anything, whatever socket
              the target holds, inherited ones too) and with --trace-net
  sys         always notified and denied with EPERM
  enosys      always notified and answered ENOSYS (io_uring bypasses seccomp)
  signal:K    notified when register K names the supervisor (pid, -1 or its group)
  pid:K       notified when register K names another process than the caller (not 0)
  prio:W=U:K  notified when register W selects the uid-wide form (value U: "every process of
              my uid", which reaches the host's other processes of that uid and, unprivileged,
              the supervisor) or register K names someone else than the caller (not 0)
  adjtime:K   always notified: the modes word of the struct at register K decides whether the
              call reads or sets the clock (see decide.py)
  syslog      notified for the actions that change kernel log state (clear, console on/off,
              console level); reading is left to the kernel's own dmesg_restrict check
  ioctl       notified for TIOCSTI / TIOCLINUX (keystroke injection into the terminal), the
              filesystem ioctl families 'f', 'v', 'X' that write (inode changes; category fs),
              EXT4_IOC_SHUTDOWN, USERFAULTFD_IOC_NEW, and the administrative families in
              ADMIN_IOCTLS (netdev, block, loop), where only the listed reads continue
  seccomp     notified for a filter that asks for a second notification listener
  exit        internal: notified to read the exiting process's peak RSS, then CONTINUE
"""

from __future__ import annotations

from bubble.sandbox.record import Record


class Syscall(Record):
    """One row of the table (a `Record`: read-only, and cheap to import)."""

    __slots__ = ("args", "category", "name", "note", "nr", "rule")
    name: str
    nr: int  # x86_64 number
    category: str  # fs | net | sys | exec | internal
    args: tuple[str, ...]
    rule: str
    note: str

    def __init__(
        self, name: str, nr: int, category: str, args: tuple[str, ...], rule: str, note: str = ""
    ) -> None:
        self._set(name=name, nr=nr, category=category, args=args, rule=rule, note=note)


def _row(name: str, nr: int, category: str, args: str, rule: str, note: str = "") -> Syscall:
    return Syscall(name, nr, category, tuple(args.split()) if args else (), rule, note)


# fmt: off  (one row a line reads best)
TABLE: tuple[Syscall, ...] = (
    # --- filesystem mutations ----------------------------------------------------------------
    _row("open", 2, "fs", "path oflags mode", "open:1"),
    _row("openat", 257, "fs", "dirfd path oflags mode", "open:2"),
    _row("creat", 85, "fs", "path mode", "fs"),
    _row(
        "openat2",
        437,
        "fs",
        "dirfd path how -",
        "fs",
        "flags live in memory: read-only opens answer ENOSYS so callers fall back to openat",
    ),
    _row("unlink", 87, "fs", "path", "fs"),
    _row("unlinkat", 263, "fs", "dirfd path -", "fs"),
    _row("rmdir", 84, "fs", "path", "fs"),
    _row("rename", 82, "fs", "path path2", "fs"),
    _row("renameat", 264, "fs", "dirfd path dirfd2 path2", "fs"),
    _row("renameat2", 316, "fs", "dirfd path dirfd2 path2 -", "fs"),
    _row("mkdir", 83, "fs", "path mode", "fs"),
    _row("mkdirat", 258, "fs", "dirfd path mode", "fs"),
    _row("mknod", 133, "fs", "path mode -", "fs"),
    _row("mknodat", 259, "fs", "dirfd path mode -", "fs"),
    _row("link", 86, "fs", "path path2", "fs"),
    _row("linkat", 265, "fs", "dirfd path dirfd2 path2 -", "fs"),
    _row("symlink", 88, "fs", "ltarget path", "fs"),
    _row("symlinkat", 266, "fs", "ltarget dirfd path", "fs"),
    _row("truncate", 76, "fs", "path -", "fs"),
    _row("chmod", 90, "fs", "path mode", "fs"),
    _row(
        "fchmod",
        91,
        "fs",
        "fd mode",
        "fs",
        "works on an O_RDONLY fd: ownership, not the fd's mode, decides",
    ),
    _row("fchmodat", 268, "fs", "dirfd path mode", "fs"),
    _row("fchmodat2", 452, "fs", "dirfd path mode -", "fs"),
    _row("chown", 92, "fs", "path uid gid", "fs"),
    _row("fchown", 93, "fs", "fd uid gid", "fs"),
    _row("lchown", 94, "fs", "path uid gid", "fs"),
    _row("fchownat", 260, "fs", "dirfd path uid gid -", "fs"),
    _row("utime", 132, "fs", "path -", "fs"),
    _row("utimes", 235, "fs", "path -", "fs"),
    _row("futimesat", 261, "fs", "dirfd path -", "fs"),
    _row("utimensat", 280, "fs", "dirfd path - -", "fs", "a NULL path means futimens(dirfd)"),
    _row("setxattr", 188, "fs", "path xname - - -", "fs"),
    _row("lsetxattr", 189, "fs", "path xname - - -", "fs"),
    _row("fsetxattr", 190, "fs", "fd xname - - -", "fs"),
    _row("setxattrat", 463, "fs", "dirfd path - xname - -", "fs"),
    _row("removexattr", 197, "fs", "path xname", "fs"),
    _row("lremovexattr", 198, "fs", "path xname", "fs"),
    _row("fremovexattr", 199, "fs", "fd xname", "fs"),
    _row("removexattrat", 466, "fs", "dirfd path - xname", "fs"),
    _row(
        "file_setattr",
        469,
        "fs",
        "dirfd path - - -",
        "fs",
        "sets inode flags and project ids (Linux 6.17)",
    ),
    _row(
        "mq_open",
        240,
        "fs",
        "mqname oflags mode -",
        "open:1",
        "creates or writes a POSIX message queue in the mqueue filesystem",
    ),
    _row("mq_unlink", 241, "fs", "mqname", "fs"),
    # --- network -----------------------------------------------------------------------------
    _row("socket", 41, "net", "domain socktype proto", "socket"),
    _row(
        "socketpair",
        53,
        "net",
        "domain socktype proto -",
        "socketpair",
        "an AF_UNIX datagram socket could address any named socket with sendmsg",
    ),
    _row("connect", 42, "net", "fd sockaddr -", "addr"),
    _row(
        "bind",
        49,
        "net",
        "fd sockaddr -",
        "addr",
        "an AF_UNIX path bind creates a file: under --deny-fs=1 it is an fs denial",
    ),
    _row(
        "listen",
        50,
        "net",
        "fd -",
        "listen",
        "an unbound socket is bound to an ephemeral port first",
    ),
    _row("sendto", 44, "net", "fd buf len - sockaddr -", "sendto"),
    _row("sendmsg", 46, "net", "fd msghdr -", "msg"),
    _row("sendmmsg", 307, "net", "fd mmsghdr - -", "msg"),
    # --- process observation -----------------------------------------------------------------
    _row("execve", 59, "exec", "path argv -", "exec"),
    _row("execveat", 322, "exec", "dirfd path argv - -", "exec"),
    # --- always denied: ways out of the sandbox or into the kernel ---------------------------
    _row("ptrace", 101, "sys", "- pid - -", "sys"),
    _row("process_vm_writev", 311, "sys", "pid - - - - -", "sys"),
    _row("pidfd_getfd", 438, "sys", "fd fd -", "sys"),
    _row("mount", 165, "sys", "path path2 - - -", "sys"),
    _row("umount2", 166, "sys", "path -", "sys"),
    _row("pivot_root", 155, "sys", "path path2", "sys"),
    _row("chroot", 161, "sys", "path", "sys"),
    _row("fsopen", 430, "sys", "path -", "sys"),
    _row("fsconfig", 431, "sys", "fd - - - -", "sys"),
    _row("fsmount", 432, "sys", "fd - -", "sys"),
    _row("fspick", 433, "sys", "dirfd path -", "sys"),
    _row("move_mount", 429, "sys", "dirfd path dirfd2 path2 -", "sys"),
    _row("open_tree", 428, "sys", "dirfd path -", "sys"),
    _row("mount_setattr", 442, "sys", "dirfd path - - -", "sys"),
    _row("open_tree_attr", 467, "sys", "dirfd path - - -", "sys"),
    _row("init_module", 175, "sys", "- - -", "sys"),
    _row("finit_module", 313, "sys", "fd - -", "sys"),
    _row("delete_module", 176, "sys", "path -", "sys"),
    _row("kexec_load", 246, "sys", "- - - -", "sys"),
    _row("kexec_file_load", 320, "sys", "fd fd - - -", "sys"),
    _row("bpf", 321, "sys", "- - -", "sys"),
    _row("perf_event_open", 298, "sys", "- pid - - -", "sys"),
    _row("keyctl", 250, "sys", "- - - - -", "sys"),
    _row("add_key", 248, "sys", "- - - - -", "sys"),
    _row("request_key", 249, "sys", "- - - -", "sys"),
    _row("userfaultfd", 323, "sys", "-", "sys"),
    _row(
        "acct",
        163,
        "sys",
        "path",
        "sys",
        "the kernel would write the accounting file on the target's behalf",
    ),
    _row("swapon", 167, "sys", "path -", "sys"),
    _row("swapoff", 168, "sys", "path", "sys"),
    _row("reboot", 169, "sys", "- - - -", "sys"),
    _row("quotactl", 179, "sys", "- path - -", "sys"),
    _row("quotactl_fd", 443, "sys", "fd - - -", "sys"),
    _row(
        "open_by_handle_at",
        304,
        "sys",
        "fd - oflags",
        "sys",
        "opens by inode handle, bypassing path checks",
    ),
    _row("setns", 308, "sys", "fd -", "sys"),
    _row("iopl", 172, "sys", "-", "sys"),
    _row("ioperm", 173, "sys", "- - -", "sys"),
    _row("settimeofday", 164, "sys", "- -", "sys"),
    _row("clock_settime", 227, "sys", "- -", "sys"),
    _row("sethostname", 170, "sys", "- -", "sys"),
    _row("setdomainname", 171, "sys", "- -", "sys"),
    _row("vhangup", 153, "sys", "", "sys"),
    _row("uselib", 134, "sys", "path", "sys"),
    _row(
        "io_uring_setup",
        425,
        "sys",
        "- -",
        "enosys",
        "io_uring performs I/O that seccomp never sees",
    ),
    _row("io_uring_enter", 426, "sys", "fd - - - - -", "enosys"),
    _row("io_uring_register", 427, "sys", "fd - - -", "enosys"),
    _row(
        "ioctl",
        16,
        "sys",
        "fd cmd -",
        "ioctl",
        "TIOCSTI/TIOCLINUX push keystrokes into the terminal (sys); filesystem ioctls ('f', 'v', 'X' writes, e.g. FS_IOC_SETFLAGS, FS_IOC_SETVERSION, FS_IOC_FSSETXATTR) change inodes through a read-only fd (fs)",
    ),
    _row(
        "seccomp",
        317,
        "sys",
        "- - -",
        "seccomp",
        "a second listener would take notifications from us",
    ),
    _row("kill", 62, "sys", "pid -", "signal:0"),
    _row("tkill", 200, "sys", "pid -", "signal:0"),
    _row("tgkill", 234, "sys", "pid - -", "signal:0"),
    _row("rt_sigqueueinfo", 129, "sys", "pid - -", "signal:0"),
    _row("rt_tgsigqueueinfo", 297, "sys", "pid - - -", "signal:0"),
    _row(
        "pidfd_open", 434, "sys", "pid -", "signal:0", "a pidfd of the supervisor could signal it"
    ),
    _row(
        "prlimit64",
        302,
        "sys",
        "pid - - -",
        "pid:0",
        "limits of another process: RLIMIT_CPU would kill a same-user supervisor",
    ),
    _row(
        "setpriority",
        141,
        "sys",
        "- pid -",
        "prio:0=2:1",
        "another process's priority, or every process of the uid (PRIO_USER, who 0 = mine): could starve the supervisor or renice the host's processes",
    ),
    _row(
        "sched_setscheduler",
        144,
        "sys",
        "pid - -",
        "pid:0",
        "another process's scheduling: could starve the supervisor",
    ),
    _row("sched_setparam", 142, "sys", "pid -", "pid:0", "as sched_setscheduler"),
    _row("sched_setattr", 314, "sys", "pid - -", "pid:0", "as sched_setscheduler"),
    _row(
        "ioprio_set",
        251,
        "sys",
        "- pid -",
        "prio:0=3:1",
        "another process's I/O priority, or every process of the uid (IOPRIO_WHO_USER)",
    ),
    _row(
        "adjtimex",
        159,
        "sys",
        "-",
        "adjtime:0",
        "a non-zero modes word sets the clock or NTP state (CAP_SYS_TIME, kept with --keep-caps)",
    ),
    _row("clock_adjtime", 305, "sys", "- -", "adjtime:1", "as adjtimex"),
    _row(
        "syslog",
        103,
        "sys",
        "- - -",
        "syslog",
        "clearing the kernel log and console log level or on/off (CAP_SYSLOG)",
    ),
    _row(
        "pidfd_send_signal",
        424,
        "sys",
        "fd - - -",
        "sys",
        "the fd may be the supervisor's /proc/PID directory: which process it names cannot be checked without a race",
    ),
    # --- internal ----------------------------------------------------------------------------
    _row(
        "exit_group",
        231,
        "internal",
        "-",
        "exit",
        "read VmHWM before the mm is gone: wait4's ru_maxrss would include the pre-exec launcher",
    ),
)
# fmt: on

# ioctl requests the filter routes (DESIGN §2.3: keystroke injection; inode changes).
TTY_IOCTLS = frozenset({0x5412, 0x541C})  # TIOCSTI, TIOCLINUX
# _IOR('X', 125, __u32): ext4, xfs and f2fs shut the filesystem down. An _IOR that writes,
# so the 'X' family rule (writes only) does not catch it.
EXT4_IOC_SHUTDOWN = 0x8004587D
USERFAULTFD_IOC_NEW = 0xAA00  # /dev/userfaultfd: a page fault handler that can stall us
# Always denied whatever the fd, decided on the request register (category sys).
DENIED_IOCTLS = {EXT4_IOC_SHUTDOWN: "EXT4_IOC_SHUTDOWN", USERFAULTFD_IOC_NEW: "USERFAULTFD_IOC_NEW"}


class IoctlFamily(Record):
    """An administrative ioctl family: every request of type byte `kind` is routed; the
    `reads` continue (they only report state), every other request is denied and alerted.
    Decided on the request register alone: no memory, no race."""

    __slots__ = ("kind", "name", "note", "reads")
    name: str
    kind: int  # the type byte: bits 8-15 of the request
    reads: frozenset[int]
    note: str

    def __init__(self, name: str, kind: int, reads: frozenset[int], note: str) -> None:
        self._set(name=name, kind=kind, reads=reads, note=note)


ADMIN_IOCTLS: tuple[IoctlFamily, ...] = (
    IoctlFamily(
        "netdev",
        0x89,
        frozenset(
            # SIOCGIF* and the socket's own state (FIOGETOWN, SIOCGPGRP, SIOCATMARK, stamps)
            {0x8903, 0x8904, 0x8905, 0x8906, 0x8907, 0x8910, 0x8912, 0x8913, 0x8915, 0x8917}
            | {0x8919, 0x891B, 0x891D, 0x891F, 0x8921, 0x8925, 0x8927, 0x8929, 0x8933, 0x8935}
            | {0x8938, 0x8940, 0x8942, 0x8947, 0x8948, 0x894B, 0x894C, 0x8954, 0x8961, 0x8970}
            | {0x8982, 0x89B1, 0x8901, 0x8902}  # FIOSETOWN/SIOCSPGRP: this socket's SIGIO owner
        ),
        "SIOCSIF*, routes, ARP, bridges: interface settings reachable from any socket",
    ),
    IoctlFamily(
        "block",
        0x12,
        frozenset(
            # BLKROGET, BLKGETSIZE, BLKRAGET, BLKFRAGET, BLKSECTGET, BLKSSZGET, BLKIOMIN,
            # BLKIOOPT, BLKALIGNOFF, BLKPBSZGET, BLKDISCARDZEROES, BLKROTATIONAL,
            # BLKBSZGET, BLKGETSIZE64, BLKGETDISKSEQ, BLKGETZONESZ, BLKGETNRZONES
            {0x125E, 0x1260, 0x1263, 0x1265, 0x1267, 0x1268, 0x1278, 0x1279, 0x127A}
            | {0x127B, 0x127C, 0x127E, 0x80081270, 0x80081272, 0x80081280, 0x80041284}
            | {0x80041285}
        ),
        "BLKRRPART, BLKPG, BLKROSET, BLKFLSBUF, BLKDISCARD, ...: partitions and devices",
    ),
    IoctlFamily(
        "loop",
        0x4C,
        frozenset({0x4C03, 0x4C05}),  # LOOP_GET_STATUS, LOOP_GET_STATUS64
        "LOOP_CTL_ADD/GET_FREE (even on a read-only /dev/loop-control), LOOP_SET_FD, ...",
    ),
)
ADMIN_BY_KIND: dict[int, IoctlFamily] = {f.kind: f for f in ADMIN_IOCTLS}
# syslog(2) actions that change state: READ_CLEAR, CLEAR, CONSOLE_OFF, CONSOLE_ON, CONSOLE_LEVEL
SYSLOG_CHANGES = (4, 5, 6, 7, 8)
# AF_UNIX socket types that cannot address a named socket: stream (1) and seqpacket (5).
# Every other type (datagram, and raw, which AF_UNIX turns into datagram) is refused under
# --deny-net=1; an inherited one is caught at sendto/sendmsg/sendmmsg, which are notified.
UNIX_CONNECTED_TYPES = (1, 5)
FS_IOCTL_TYPES = (ord("f"), ord("v"), ord("X"))  # FS_IOC_*, EXT4_IOC_*, FS_IOC_FSSETXATTR
FS_IOC_SET_ENCRYPTION_POLICY = 0x800C6613  # an _IOR that sets a policy

BY_NR: dict[int, Syscall] = {s.nr: s for s in TABLE}
BY_NAME: dict[str, Syscall] = {s.name: s for s in TABLE}

# Syscalls that change state but are deliberately NOT mediated, with the reason.
EXCLUDED: dict[str, str] = {
    "write": "needs an fd opened for writing; under --deny-fs=1 only inherited stdio, pipes, sockets and memfds can be",
    "pwrite64": "as write",
    "writev": "as write",
    "pwritev": "as write",
    "pwritev2": "as write",
    "ftruncate": "needs a writable fd (see write); memfd sizing must keep working",
    "fallocate": "needs a writable fd (see write)",
    "copy_file_range": "needs a writable destination fd (see write)",
    "splice": "writes only to fds the target could already write",
    "tee": "pipes only",
    "sendfile": "writes only to fds the target could already write",
    "vmsplice": "pipes only",
    "msync": "writes back only MAP_SHARED mappings of fds opened for writing",
    "sync": "flushes caches, changes no file content",
    "syncfs": "as sync",
    "fsync": "as sync",
    "fdatasync": "as sync",
    "sync_file_range": "as sync",
    "flock": "advisory lock, no file change",
    "memfd_create": "anonymous memory file, no path; linking it into the tree needs linkat (mediated)",
    "memfd_secret": "anonymous memory",
    "name_to_handle_at": "reads a handle; opening by handle (open_by_handle_at) is denied",
    "inotify_add_watch": "observes, does not change",
    "fanotify_mark": "observes; fanotify_init itself needs CAP_SYS_ADMIN",
    "unshare": "a new user namespace grants nothing the filter allows: mount and friends stay denied in it",
    "lookup_dcookie": "removed from the kernel",
    "nfsservctl": "removed from the kernel",
    "_sysctl": "removed from the kernel (ENOSYS)",
    "create_module": "removed from the kernel",
    "query_module": "removed from the kernel",
    "readlink": "reads only",
    "readlinkat": "reads only",
    "process_vm_readv": "reads only; the supervisor is non-dumpable, so it cannot be read",
    "mq_timedsend": "needs a queue opened for writing, which mq_open mediates",
    "mq_timedreceive": "reads a queue",
    "mq_notify": "registers for notification",
    "mq_getsetattr": "only O_NONBLOCK of the caller's own descriptor",
    "inotify_init": "observes",
    "inotify_init1": "observes",
    "inotify_rm_watch": "observes",
    "fanotify_init": "needs CAP_SYS_ADMIN",
    "pkey_mprotect": "memory protection keys of the caller's own memory",
    "pkey_alloc": "memory protection keys of the caller's own memory",
    "pkey_free": "memory protection keys of the caller's own memory",
    "timer_settime": "a timer of the caller",
    "timerfd_settime": "a timer of the caller",
    "landlock_create_ruleset": "Landlock only ever restricts the caller",
    "landlock_add_rule": "Landlock only ever restricts the caller",
    "landlock_restrict_self": "Landlock only ever restricts the caller",
    "signalfd": "the caller's own signals",
    "signalfd4": "the caller's own signals",
    "rt_sigaction": "the caller's own signal handlers",
    "rt_sigprocmask": "the caller's own signal mask",
    "rt_sigreturn": "the caller's own signal frame",
    "rt_sigpending": "the caller's own signals",
    "rt_sigtimedwait": "the caller's own signals",
    "rt_sigsuspend": "the caller's own signals",
    "sigaltstack": "the caller's own signal stack",
    "epoll_create": "an epoll instance of the caller",
    "epoll_create1": "an epoll instance of the caller",
    "mbind": "the caller's own memory policy",
    "timer_create": "a timer of the caller",
    "timerfd_create": "a timer of the caller",
}

# Sockets and messages under --deny-net=1, explained once for the docs.
NET_NOTES = (
    "Under --deny-net=1 the target runs in its own network namespace (the wall: nothing it "
    "sends can leave). AF_INET/AF_INET6 stream and datagram sockets may be created there "
    "(logged as net.socket); raw, packet, netlink, vsock and other families, and AF_UNIX "
    "datagram sockets, are refused at socket() from registers. connect, bind, listen and "
    "sendto/sendmsg/sendmmsg with an address are denied with the destination in the alert; "
    "a UDP connect to port 53 goes through inside the wall so that the DNS query which "
    "follows is seen and denied. Without network namespaces every socket but AF_UNIX "
    "stream/seqpacket is refused at socket()."
)
