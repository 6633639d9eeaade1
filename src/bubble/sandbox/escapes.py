"""The escape probes: one small program per known way around a seccomp sandbox.

Each probe is a Python snippet run *as the target* (`python3 -I -c`, stdlib + ctypes only, so
no compiler is needed). It tries one escape, prints `RESULT <errno>` and then `ALIVE`. A probe
passes when the escape is blocked (the right errno, and no effect seen from outside), logged
(an event of the right category) and the program continued. `bubble selftest` runs them on the
current machine; the test suite runs them too (tests/escape/).
"""

from __future__ import annotations

from dataclasses import dataclass

# Shared by every snippet: `sc(nr, *args)` makes a raw syscall and returns the errno name.
PRELUDE = r"""
import ctypes, errno, os, socket, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
D = sys.argv[1]
def sc(nr, *args):
    cargs = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    r = libc.syscall(ctypes.c_long(nr), *cargs)
    return "0" if r >= 0 else errno.errorcode[ctypes.get_errno()]
def done(result):
    print("RESULT", result, flush=True)
    print("ALIVE", flush=True)
def p(s):
    return ctypes.c_char_p(s.encode())
def try_net(family, kind, host):
    try:
        s = socket.socket(family, kind)
        peer = (host, int(sys.argv[2]))
        if kind == socket.SOCK_DGRAM:
            s.sendto(b"x", peer)
        else:
            s.connect(peer)
        done("0")
    except OSError as e:
        done(errno.errorcode[e.errno])
"""


@dataclass(frozen=True, slots=True)
class Escape:
    """One probe. `effect` names a path (relative to the work dir) that must not exist after."""

    name: str
    code: str
    category: str
    errno: str = "EPERM"
    flags: tuple[str, ...] = ()
    effect: str | None = None
    syscall: str | None = None  # the syscall the event must name
    setup: str = ""  # files to create first: "f" (a file), "d" (a directory), "s" (a socket)
    listener: str | None = None  # "tcp", "udp", "tcp6": a loopback listener that must get nothing


ESCAPES: tuple[Escape, ...] = (
    Escape("creat", "done(sc(85, p(D + '/x'), 0o644))", "fs", effect="x", syscall="creat"),
    Escape(
        "openat O_WRONLY|O_CREAT",
        "done(sc(257, -100, p(D + '/x'), 0o101, 0o644))",
        "fs",
        effect="x",
        syscall="openat",
    ),
    Escape(
        "openat2 write",
        "how = struct.pack('QQQ', 0o101, 0o644, 0)\n"
        "done(sc(437, -100, p(D + '/x'), ctypes.c_char_p(how), 24))",
        "fs",
        effect="x",
        syscall="openat2",
    ),
    Escape(
        "O_TMPFILE then linkat",
        "done(sc(257, -100, p(D), 0o20200002, 0o600))",
        "fs",
        syscall="openat",
    ),
    Escape(
        "rename",
        "done(sc(82, p(D + '/f'), p(D + '/x')))",
        "fs",
        effect="x",
        setup="f",
        syscall="rename",
    ),
    Escape(
        "renameat2 exchange",
        "done(sc(316, -100, p(D + '/f'), -100, p(D + '/d'), 2))",
        "fs",
        setup="fd",
        syscall="renameat2",
    ),
    Escape(
        "link",
        "done(sc(86, p(D + '/f'), p(D + '/x')))",
        "fs",
        effect="x",
        setup="f",
        syscall="link",
    ),
    Escape(
        "symlink",
        "done(sc(88, p('/etc/passwd'), p(D + '/x')))",
        "fs",
        effect="x",
        syscall="symlink",
    ),
    Escape(
        "mknod fifo", "done(sc(133, p(D + '/x'), 0o10644, 0))", "fs", effect="x", syscall="mknod"
    ),
    Escape("truncate", "done(sc(76, p(D + '/f'), 0))", "fs", setup="f", syscall="truncate"),
    Escape(
        "fchmod on an O_RDONLY fd",
        "fd = os.open(D + '/f', os.O_RDONLY)\ndone(sc(91, fd, 0o777))",
        "fs",
        setup="f",
        syscall="fchmod",
    ),
    Escape(
        "fchmodat2",
        "done(sc(452, -100, p(D + '/f'), 0o777, 0))",
        "fs",
        setup="f",
        syscall="fchmodat2",
    ),
    Escape(
        "chown",
        "done(sc(92, p(D + '/f'), os.getuid(), os.getgid()))",
        "fs",
        setup="f",
        syscall="chown",
    ),
    Escape(
        "utimensat",
        "done(sc(280, -100, p(D + '/f'), None, 0))",
        "fs",
        setup="f",
        syscall="utimensat",
    ),
    Escape(
        "setxattr",
        "done(sc(188, p(D + '/f'), p('user.x'), p('1'), 1, 0))",
        "fs",
        setup="f",
        syscall="setxattr",
    ),
    Escape(
        "reopen read-only fd via /proc/self/fd",
        "fd = os.open(D + '/f', os.O_RDONLY)\n"
        "done(sc(257, -100, p(f'/proc/self/fd/{fd}'), 0o1, 0))",
        "fs",
        setup="f",
        syscall="openat",
    ),
    Escape(
        "io_uring (openat/connect bypass seccomp)",
        "done(sc(425, 8, ctypes.create_string_buffer(120)))",
        "sys",
        errno="ENOSYS",
        syscall="io_uring_setup",
    ),
    Escape(
        "x32 syscall number",
        "done(sc(0x40000000 | 85, p(D + '/x'), 0o644))",
        "fs",
        effect="x",
        syscall="creat",
    ),
    Escape(
        "socket((1<<32)|AF_PACKET)", "done(sc(41, (1 << 32) | 17, 3, 0))", "net", syscall="socket"
    ),
    Escape(
        "open_by_handle_at",
        "done(sc(304, -100, ctypes.create_string_buffer(128), 0))",
        "sys",
        syscall="open_by_handle_at",
    ),
    Escape(
        "ptrace the supervisor", "done(sc(101, 16, os.getppid(), 0, 0))", "sys", syscall="ptrace"
    ),
    Escape(
        "process_vm_writev the supervisor",
        "done(sc(311, os.getppid(), None, 0, None, 0, 0))",
        "sys",
        syscall="process_vm_writev",
    ),
    Escape("kill the supervisor", "done(sc(62, os.getppid(), 9))", "sys", syscall="kill"),
    Escape(
        "steal the listener with pidfd_getfd",
        "done(sc(438, 0, 3, 0))",
        "sys",
        syscall="pidfd_getfd",
    ),
    Escape(
        "unshare(NEWUSER|NEWNS) then mount",
        "sc(272, 0x10020000)\ndone(sc(165, p('none'), p(D), p('tmpfs'), 0, None))",
        "sys",
        syscall="mount",
    ),
    Escape("second seccomp listener", "done(sc(317, 1, 8, None))", "sys", syscall="seccomp"),
    Escape(
        "TIOCSTI keystroke injection", "done(sc(16, 0, 0x5412, p('x')))", "sys", syscall="ioctl"
    ),
    Escape(
        "acct (kernel writes the file)",
        "done(sc(163, p(D + '/x')))",
        "sys",
        effect="x",
        syscall="acct",
    ),
    Escape(
        "TCP connect to a loopback listener",
        "try_net(socket.AF_INET, socket.SOCK_STREAM, '127.0.0.1')",
        "net",
        syscall="connect",
        listener="tcp",
    ),
    Escape(
        "UDP to a loopback listener",
        "try_net(socket.AF_INET, socket.SOCK_DGRAM, '127.0.0.1')",
        "net",
        syscall="sendto",
        listener="udp",
    ),
    Escape(
        "TCP over IPv6 to ::1",
        "try_net(socket.AF_INET6, socket.SOCK_STREAM, '::1')",
        "net",
        syscall="connect",
        listener="tcp6",
    ),
    Escape(
        "TCP to an IPv4-mapped IPv6 address",
        "try_net(socket.AF_INET6, socket.SOCK_STREAM, '::ffff:127.0.0.1')",
        "net",
        syscall="connect",
        listener="tcp",
    ),
    Escape(
        "UDP sendmsg with an address",
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "try:\n    s.sendmsg([b'x'], [], 0, ('127.0.0.1', int(sys.argv[2]))); done('0')\n"
        "except OSError as e:\n    done(errno.errorcode[e.errno])",
        "net",
        syscall="sendmsg",
        listener="udp",
    ),
    Escape(
        "UDP connect then send to a loopback listener",
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "try:\n    s.connect(('127.0.0.1', int(sys.argv[2]))); s.send(b'x'); done('0')\n"
        "except OSError as e:\n    done(errno.errorcode[e.errno])",
        "net",
        syscall="connect",
        listener="udp",
    ),
    Escape(
        "listen on an unbound socket",
        "s = socket.socket()\ndone(sc(50, s.fileno(), 1))",
        "net",
        syscall="listen",
    ),
    Escape(
        "AF_UNIX named connect",
        "s = socket.socket(socket.AF_UNIX)\n"
        "a = struct.pack('H', 1) + (D + '/sock').encode() + b'\\0'\n"
        "done(sc(42, s.fileno(), ctypes.c_char_p(a), len(a)))",
        "net",
        syscall="connect",
        setup="s",
    ),
    Escape(
        "AF_UNIX abstract connect",
        "s = socket.socket(socket.AF_UNIX)\n"
        "a = struct.pack('H', 1) + b'\\0bubble-selftest'\n"
        "done(sc(42, s.fileno(), ctypes.c_char_p(a), len(a)))",
        "net",
        syscall="connect",
    ),
    Escape("AF_UNIX datagram socket", "done(sc(41, 1, 2, 0))", "net", syscall="socket"),
    Escape(
        "AF_UNIX raw socket (datagram in disguise)",
        "done(sc(41, 1, 3, 0))",
        "net",
        syscall="socket",
    ),
    Escape(
        "AF_UNIX raw socketpair",
        "done(sc(53, 1, 3, 0, ctypes.create_string_buffer(8)))",
        "net",
        syscall="socketpair",
    ),
    Escape(
        "prlimit64 on the supervisor",
        "lim = struct.pack('QQ', 1, 1)\ndone(sc(302, os.getppid(), 0, ctypes.c_char_p(lim), None))",
        "sys",
        syscall="prlimit64",
    ),
    Escape(
        "setpriority of the supervisor",
        "done(sc(141, 0, os.getppid(), 19))",
        "sys",
        syscall="setpriority",
    ),
    Escape(
        "FS_IOC_SETVERSION on an O_RDONLY fd",
        "fd = os.open(D + '/f', os.O_RDONLY)\n"
        "done(sc(16, fd, 0x40087602, ctypes.byref(ctypes.c_long(4242))))",
        "fs",
        setup="f",
        syscall="ioctl",
    ),
    Escape("AF_PACKET", "done(sc(41, 17, 3, 0))", "net", syscall="socket"),
    Escape("AF_NETLINK", "done(sc(41, 16, 3, 0))", "net", syscall="socket"),
    Escape(
        "write the supervisor's memory (--deny-fs=0)",
        "done(sc(257, -100, p(f'/proc/{os.getppid()}/mem'), 2, 0))",
        "fs",
        errno="EACCES",
        flags=("--deny-fs=0",),
        syscall="openat",
    ),
    Escape(
        "fork child writes",
        "pid = os.fork()\n"
        "if pid == 0:\n    print('CHILD', sc(85, p(D + '/x'), 0o644), flush=True); os._exit(0)\n"
        "os.waitpid(pid, 0)\ndone('EPERM')",
        "fs",
        effect="x",
        syscall="creat",
    ),
    Escape(
        "posix_spawn child writes",
        "pid = os.posix_spawn('/bin/sh', ['sh', '-c', 'echo x > \"$0\"/x', D], {})\n"
        "os.waitpid(pid, 0)\ndone('EPERM')",
        "fs",
        effect="x",
        syscall="openat",
    ),
)
