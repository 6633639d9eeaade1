"""Every row of the syscall table, run for real under the filter.

For each mediated call a probe makes the call once. Under the default policy the call must
fail with the right errno, the probe must keep running, the event must name the syscall and
its context, and the effect must be absent when looked at from outside. With the category
allowed (`--deny-fs=0`), the same call must succeed and be logged.
"""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from bubble.sandbox.syscalls import TABLE
from tests.conftest import give, run_bubble, target_ids

UID, GID = target_ids()
S_IFIFO_644 = hex(stat.S_IFIFO | 0o644)

# name -> (probe arguments, reported path, reported second path). {d} is the work directory.
FS_CASES: dict[str, tuple[list[str], str, str | None]] = {
    "open": (["s:{d}/new", "0x41", "0644"], "{d}/new", None),
    "openat": (["cwd", "s:{d}/new", "0x241", "0644"], "{d}/new", None),
    "creat": (["s:{d}/new", "0644"], "{d}/new", None),
    "openat2": (["cwd", "s:{d}/new", "how:0x41:0644", "24"], "{d}/new", None),
    "unlink": (["s:{d}/f"], "{d}/f", None),
    "unlinkat": (["cwd", "s:{d}/f", "0"], "{d}/f", None),
    "rmdir": (["s:{d}/e"], "{d}/e", None),
    "rename": (["s:{d}/f", "s:{d}/g"], "{d}/f", "{d}/g"),
    "renameat": (["cwd", "s:{d}/f", "cwd", "s:{d}/g"], "{d}/f", "{d}/g"),
    "renameat2": (["cwd", "s:{d}/f", "cwd", "s:{d}/g", "0"], "{d}/f", "{d}/g"),
    "mkdir": (["s:{d}/nd", "0755"], "{d}/nd", None),
    "mkdirat": (["cwd", "s:{d}/nd", "0755"], "{d}/nd", None),
    "mknod": (["s:{d}/fifo", S_IFIFO_644, "0"], "{d}/fifo", None),
    "mknodat": (["cwd", "s:{d}/fifo", S_IFIFO_644, "0"], "{d}/fifo", None),
    "link": (["s:{d}/f", "s:{d}/g"], "{d}/f", "{d}/g"),
    "linkat": (["cwd", "s:{d}/f", "cwd", "s:{d}/g", "0"], "{d}/f", "{d}/g"),
    "symlink": (["s:f", "s:{d}/g"], "{d}/g", "f"),
    "symlinkat": (["s:f", "cwd", "s:{d}/g"], "{d}/g", "f"),
    "truncate": (["s:{d}/f", "0"], "{d}/f", None),
    "chmod": (["s:{d}/f", "0600"], "{d}/f", None),
    "fchmod": (["fd:{d}/f", "0600"], "{d}/f", None),
    "fchmodat": (["cwd", "s:{d}/f", "0600"], "{d}/f", None),
    "fchmodat2": (["cwd", "s:{d}/f", "0600", "0"], "{d}/f", None),
    "chown": (["s:{d}/f", str(UID), str(GID)], "{d}/f", None),
    "fchown": (["fd:{d}/f", str(UID), str(GID)], "{d}/f", None),
    "lchown": (["s:{d}/f", str(UID), str(GID)], "{d}/f", None),
    "fchownat": (["cwd", "s:{d}/f", str(UID), str(GID), "0"], "{d}/f", None),
    "utime": (["s:{d}/f", "null"], "{d}/f", None),
    "utimes": (["s:{d}/f", "null"], "{d}/f", None),
    "futimesat": (["cwd", "s:{d}/f", "null"], "{d}/f", None),
    "utimensat": (["cwd", "s:{d}/f", "null", "0"], "{d}/f", None),
    "setxattr": (["s:{d}/f", "s:user.new", "s:v", "1", "0"], "{d}/f", None),
    "lsetxattr": (["s:{d}/f", "s:user.new", "s:v", "1", "0"], "{d}/f", None),
    "fsetxattr": (["fd:{d}/f", "s:user.new", "s:v", "1", "0"], "{d}/f", None),
    "setxattrat": (["cwd", "s:{d}/f", "0", "s:user.new", "xargs:v", "16"], "{d}/f", None),
    "removexattr": (["s:{d}/f", "s:user.old"], "{d}/f", None),
    "lremovexattr": (["s:{d}/f", "s:user.old"], "{d}/f", None),
    "fremovexattr": (["fd:{d}/f", "s:user.old"], "{d}/f", None),
    "removexattrat": (["cwd", "s:{d}/f", "0", "s:user.old"], "{d}/f", None),
    "file_setattr": (["cwd", "s:{d}/f", "how:0:0", "24", "0"], "{d}/f", None),
    "mq_open": (["s:bubble-test-q", "0x42", "0600", "null"], "/dev/mqueue/bubble-test-q", None),
    "mq_unlink": (["s:bubble-test-q-absent"], "/dev/mqueue/bubble-test-q-absent", None),
}
OPEN_FLAGS = {
    "open": "O_WRONLY|O_CREAT",
    "openat": "O_WRONLY|O_CREAT|O_TRUNC",
    "openat2": "O_WRONLY|O_CREAT",
}
# Calls that cannot change what a snapshot sees, or cannot succeed as an unprivileged user.
NO_VISIBLE_EFFECT = {
    "chown",
    "fchown",
    "lchown",
    "fchownat",
    "mq_open",
    "mq_unlink",
    "file_setattr",
}
NOT_ALLOWED_NATIVELY = {"mq_unlink"}  # the queue does not exist: ENOENT natively


def _fixture(d: Path) -> None:
    f = d / "f"
    f.write_text("orig")
    os.chmod(f, 0o644)
    os.setxattr(f, "user.old", b"1")
    (d / "e").mkdir()
    for p in (f, d / "e"):
        give(p)
    os.utime(f, (1_000_000_000, 1_000_000_000))


def snapshot(d: Path) -> dict[str, tuple]:
    """Everything a mutation could change, seen from outside the sandbox."""
    out = {}
    for p in sorted(d.rglob("*")):
        st = p.lstat()
        xattrs = tuple(sorted(os.listxattr(p, follow_symlinks=False))) if not p.is_symlink() else ()
        content = p.read_bytes() if p.is_file() and not p.is_symlink() else b""
        out[str(p.relative_to(d))] = (
            st.st_mode,
            st.st_uid,
            st.st_gid,
            st.st_size,
            st.st_mtime_ns,
            st.st_nlink,
            content,
            xattrs,
        )
    return out


def _args(case: list[str], d: Path) -> list[str]:
    return [a.replace("{d}", str(d)) for a in case]


def _result_line(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("RESULT"))


FS_ROWS = [r for r in TABLE if r.category == "fs"]


@pytest.mark.parametrize("row", FS_ROWS, ids=lambda r: r.name)
def test_fs_row_denied(row, probe, workdir):
    args, path, path2 = FS_CASES[row.name]
    _fixture(workdir)
    before = snapshot(workdir)
    res = run_bubble([probe, "sys", str(row.nr), *_args(args, workdir)], cwd=str(workdir))
    assert _result_line(res.stdout) == ("RESULT ret=-1 errno=EPERM"), res.stdout + res.stderr
    assert "ALIVE" in res.stdout, "the probe must keep running after the denial"
    assert snapshot(workdir) == before, "a denied call changed the filesystem"
    [alert] = res.alerts
    assert alert["syscall"] == row.name and alert["syscall_no"] == row.nr
    assert alert["category"] == "fs" and alert["denied"] == "EPERM" and alert["reason"] == "errno"
    assert alert["path"] == path.replace("{d}", str(workdir))
    if path2:
        assert alert["path2"] == path2.replace("{d}", str(workdir))
    if row.name in OPEN_FLAGS:
        assert alert["flags"] == OPEN_FLAGS[row.name] and alert["mode"] == 0o644
    assert res.exit["exit_code"] == 0


@pytest.mark.parametrize(
    "row", [r for r in FS_ROWS if r.name not in NOT_ALLOWED_NATIVELY], ids=lambda r: r.name
)
def test_fs_row_allowed_with_deny_fs_0(row, probe, workdir):
    args, path, _ = FS_CASES[row.name]
    _fixture(workdir)
    before = snapshot(workdir)
    try:
        res = run_bubble(
            [probe, "sys", str(row.nr), *_args(args, workdir)], ["--deny-fs=0"], cwd=str(workdir)
        )
    finally:
        if row.name == "mq_open":
            _unlink_queue("bubble-test-q")
    line = _result_line(res.stdout)
    assert "errno=0" in line, f"{row.name} should succeed with --deny-fs=0: {line} {res.stderr}"
    if row.name not in NO_VISIBLE_EFFECT:
        assert snapshot(workdir) != before, "the allowed call had no effect"
    [event] = res.of_type("fs.write")
    assert event["syscall"] == row.name and event["decision"] == "ALLOW"
    assert event["path"] == path.replace("{d}", str(workdir))
    assert not res.alerts


def _unlink_queue(name: str) -> None:
    import ctypes

    ctypes.CDLL("libc.so.6").mq_unlink(f"/{name}".encode())


SYS_ARGS: dict[str, list[str]] = {
    "ptrace": ["0", "0", "0", "0"],
    "kill": ["ppid", "0"],
    "tkill": ["ppid", "0"],
    "tgkill": ["ppid", "ppid", "0"],
    "rt_sigqueueinfo": ["ppid", "0", "null"],
    "rt_tgsigqueueinfo": ["ppid", "ppid", "0", "null"],
    "pidfd_open": ["ppid", "0"],
    "process_vm_writev": ["ppid", "null", "0", "null", "0", "0"],
    "ioctl": ["0", "0x5412", "s:x"],
    "seccomp": ["1", "8", "null"],
    "mount": ["s:none", "s:/tmp", "s:tmpfs", "0", "null"],
    "umount2": ["s:/nonexistent", "0"],
    "chroot": ["s:/"],
    "pivot_root": ["s:/", "s:/"],
    "acct": ["null"],
    "swapon": ["s:/nonexistent", "0"],
    "swapoff": ["s:/nonexistent"],
    "delete_module": ["s:bubble_absent", "0"],
    "fsopen": ["s:tmpfs", "0"],
    "io_uring_setup": ["8", "null"],
    "uselib": ["s:/nonexistent"],
    "prlimit64": ["ppid", "0", "null", "null"],
    "setpriority": ["0", "ppid", "19"],
    "sched_setscheduler": ["ppid", "0", "null"],
    "sched_setparam": ["ppid", "null"],
    "sched_setattr": ["ppid", "null", "0"],
    "ioprio_set": ["1", "ppid", "0"],
}
SYS_ROWS = [r for r in TABLE if r.category == "sys"]


@pytest.mark.parametrize("row", SYS_ROWS, ids=lambda r: r.name)
def test_sys_row_denied(row, probe):
    args = SYS_ARGS.get(row.name, ["0"] * max(1, len(row.args)))
    res = run_bubble([probe, "sys", str(row.nr), *args])
    errno = "ENOSYS" if row.rule == "enosys" else "EPERM"
    assert _result_line(res.stdout) == f"RESULT ret=-1 errno={errno}", res.stdout + res.stderr
    assert "ALIVE" in res.stdout
    [alert] = res.alerts
    assert (alert["syscall"], alert["category"], alert["denied"]) == (row.name, "sys", errno)


@pytest.mark.parametrize("policy,expected", [([], "EPERM"), (["--deny-fs=0"], "0")])
def test_inode_flag_ioctl_on_read_only_fd(policy, expected, probe, workdir):
    """FS_IOC_SETFLAGS needs only ownership, not a writable fd: it is a filesystem mutation."""
    _fixture(workdir)
    res = run_bubble([probe, "sys", "16", f"fd:{workdir}/f", "0x40086602", "how:0:0"], policy)
    assert f"errno={expected}" in _result_line(res.stdout), res.stdout
    [event] = res.alerts or res.of_type("fs.write")
    assert (event["syscall"], event["category"], event["path"]) == ("ioctl", "fs", f"{workdir}/f")


@pytest.mark.parametrize(
    "request_",
    ["0x40087602", "0x40086604", "0x6609"],
    ids=["FS_IOC_SETVERSION", "EXT4_IOC_SETVERSION", "EXT4_IOC_MIGRATE"],
)
def test_filesystem_ioctl_families_are_mediated(request_, probe, workdir):
    """Any writing (or argument-less) 'f'/'v' ioctl can change an inode through a read-only fd."""
    _fixture(workdir)
    before = snapshot(workdir)
    res = run_bubble([probe, "sys", "16", f"fd:{workdir}/f", request_, "how:0:0"])
    assert "errno=EPERM" in _result_line(res.stdout)
    assert snapshot(workdir) == before
    [alert] = res.alerts
    assert (alert["syscall"], alert["category"], alert["path"]) == ("ioctl", "fs", f"{workdir}/f")


def test_harmless_self_targeted_calls_pass(probe):
    """pid 0 means the caller itself: prlimit/setpriority on oneself are not mediated."""
    for args in (
        ["302", "0", "7", "null", "s:12345678123456781234567812345678"],
        ["141", "0", "0", "5"],
    ):
        res = run_bubble([probe, "sys", *args])
        assert "errno=0" in _result_line(res.stdout) and not res.alerts, (args, res.stdout)


def test_kill_minus_one_is_denied(probe):
    res = run_bubble([probe, "sys", "62", "-1", "0"])
    assert "errno=EPERM" in _result_line(res.stdout)
    assert res.alerts[0]["syscall"] == "kill" and res.alerts[0]["detail"] == "pid -1"


def test_harmless_calls_are_not_mediated(probe):
    """Rows with register conditions only catch what they must: kill(self), a plain ioctl."""
    for args in (["62", "0", "0"], ["16", "1", "0x5401", "null"], ["39"]):
        res = run_bubble([probe, "sys", *args])
        assert not res.alerts, (args, res.alerts)


# --- network ------------------------------------------------------------------------------
@pytest.fixture
def tcp_listener():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.5)
    yield srv
    srv.close()


def _accepted(srv: socket.socket) -> bool:
    try:
        conn, _ = srv.accept()
    except TimeoutError:
        return False
    conn.close()
    return True


# Denied at socket() even inside the network wall (decided on registers).
SOCKETS = {
    "inet-raw": (["2", "3", "1"], "AF_INET"),
    "inet6-raw": (["10", "3", "58"], "AF_INET6"),
    "vsock": (["40", "1", "0"], "AF_VSOCK"),
    "packet": (["17", "3", "0"], "AF_PACKET"),
    "netlink": (["16", "3", "0"], "AF_NETLINK"),
    "unix-dgram": (["1", "2", "0"], "AF_UNIX"),
    "unix-raw": (["1", "3", "0"], "AF_UNIX"),
    "unix-dgram-high-bits": (["0x100000001", "2", "0"], "AF_UNIX"),
    "packet-high-bits": (["0x100000011", "3", "0"], "AF_PACKET"),
}
# Created inside the wall, logged as net.socket: nothing they send can leave.
WALLED_SOCKETS = {
    "inet": (["2", "1", "0"], "AF_INET"),
    "inet6": (["10", "1", "0"], "AF_INET6"),
    "inet-udp": (["2", "2", "0"], "AF_INET"),
    "inet-high-bits": (["0x100000002", "1", "0"], "AF_INET"),
}


@pytest.mark.parametrize("case", SOCKETS, ids=str)
def test_socket_denied(case, probe):
    args, family = SOCKETS[case]
    res = run_bubble([probe, "sys", "41", *args])
    assert _result_line(res.stdout) == "RESULT ret=-1 errno=EPERM"
    [alert] = res.alerts
    assert (alert["syscall"], alert["category"], alert["family_name"]) == ("socket", "net", family)


@pytest.mark.parametrize("case", WALLED_SOCKETS, ids=str)
def test_inet_socket_created_inside_the_wall(case, probe):
    args, family = WALLED_SOCKETS[case]
    res = run_bubble([probe, "sys", "41", *args])
    assert "errno=0" in _result_line(res.stdout) and not res.alerts
    [sock] = res.of_type("net.socket")
    assert (sock["family_name"], sock["decision"]) == (family, "ALLOW")


def test_unix_stream_socket_allowed(probe):
    res = run_bubble([probe, "sys", "41", "1", "1", "0"])
    assert "errno=0" in _result_line(res.stdout) and not res.alerts


def test_socketpair_dgram_denied_stream_allowed(probe):
    res = run_bubble([probe, "sys", "53", "1", "2", "0", "s:12345678"])
    assert "errno=EPERM" in _result_line(res.stdout)
    assert res.alerts[0]["syscall"] == "socketpair"
    res = run_bubble([probe, "sys", "53", "1", "1", "0", "s:12345678"])
    assert "errno=0" in _result_line(res.stdout) and not res.alerts


def test_connect_denied_and_listener_gets_nothing(probe, tcp_listener):
    port = tcp_listener.getsockname()[1]
    res = run_bubble([probe, "sys", "42", "sock:1:1", f"sa4:127.0.0.1:{port}", "16"])
    assert "errno=EPERM" in _result_line(res.stdout) and "ALIVE" in res.stdout
    [alert] = res.alerts
    assert (alert["syscall"], alert["peer"], alert["port"], alert["family"]) == (
        "connect",
        "127.0.0.1",
        port,
        2,
    )
    assert not _accepted(tcp_listener)


def test_connect_allowed_with_deny_net_0(probe, tcp_listener):
    port = tcp_listener.getsockname()[1]
    res = run_bubble(
        [probe, "sys", "42", "sock:2:1", f"sa4:127.0.0.1:{port}", "16"], ["--deny-net=0"]
    )
    assert "errno=0" in _result_line(res.stdout) and not res.alerts
    assert _accepted(tcp_listener)


def test_connect_ipv6_and_unix_decoded(probe, workdir):
    res = run_bubble([probe, "sys", "42", "sock:1:1", "sa6:::1:8080", "28"])
    assert (res.alerts[0]["peer"], res.alerts[0]["port"], res.alerts[0]["family_name"]) == (
        "::1",
        8080,
        "AF_INET6",
    )
    res = run_bubble([probe, "sys", "42", "sock:1:1", f"sun:{workdir}/sock", "110"])
    # No socket at that path: ENOENT, as the kernel would answer, and no alert.
    assert "errno=ENOENT" in _result_line(res.stdout) and not res.alerts
    [missing] = res.of_type("net.connect")
    assert (missing["peer"], missing["denied"]) == (f"{workdir}/sock", "ENOENT")
    name = "bubble-abstract"
    res = run_bubble([probe, "sys", "42", "sock:1:1", f"sunabs:{name}", str(3 + len(name))])
    assert res.alerts[0]["peer"] == "@" + name


def test_unix_connect_to_real_listener_denied(probe, workdir):
    path = workdir / "sock"
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(path))
    os.chmod(path, 0o777)
    srv.listen(1)
    srv.settimeout(0.5)
    try:
        res = run_bubble([probe, "sys", "42", "sock:1:1", f"sun:{path}", "110"])
        assert "errno=EPERM" in _result_line(res.stdout)
        [alert] = res.alerts
        assert (alert["syscall"], alert["peer"]) == ("connect", str(path))
        assert not _accepted(srv)
    finally:
        srv.close()


def test_bind_unix_denied_no_socket_file(probe, workdir):
    res = run_bubble([probe, "sys", "49", "sock:1:1", f"sun:{workdir}/bsock", "110"])
    assert "errno=EPERM" in _result_line(res.stdout)
    assert res.alerts[0]["syscall"] == "bind" and res.alerts[0]["category"] == "net"
    assert not (workdir / "bsock").exists()


def test_bind_unix_path_is_an_fs_denial_when_only_net_allowed(probe, workdir):
    res = run_bubble(
        [probe, "sys", "49", "sock:1:1", f"sun:{workdir}/bsock", "110"], ["--deny-net=0"]
    )
    assert "errno=EPERM" in _result_line(res.stdout)
    assert res.alerts[0]["category"] == "fs" and res.alerts[0]["peer"] == f"{workdir}/bsock"
    assert not (workdir / "bsock").exists()


def test_listen_denied_with_its_address(probe):
    """listen on an unbound socket would bind it: denied, the alert names the socket."""
    res = run_bubble([probe, "sys", "50", "sock:2:1", "1"])
    assert "errno=EPERM" in _result_line(res.stdout) and "ALIVE" in res.stdout
    [alert] = res.alerts
    assert (alert["syscall"], alert["peer"], alert["port"]) == ("listen", "0.0.0.0", 0)


def test_sendto_with_address_denied(probe):
    res = run_bubble([probe, "sys", "44", "sock:1:1", "s:hi", "2", "0", "sa4:127.0.0.1:9", "16"])
    assert "errno=EPERM" in _result_line(res.stdout)
    assert (res.alerts[0]["syscall"], res.alerts[0]["peer"], res.alerts[0]["port"]) == (
        "sendto",
        "127.0.0.1",
        9,
    )


def test_udp_to_loopback_listener_allowed_and_traced(probe):
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))
    srv.settimeout(2)
    port = srv.getsockname()[1]
    try:
        res = run_bubble(
            [probe, "sys", "44", "sock:2:2", "s:hello", "5", "0", f"sa4:127.0.0.1:{port}", "16"],
            ["--deny-net=0", "--trace-net", "--peek-tx=16"],
        )
        assert srv.recv(100) == b"hello"
    finally:
        srv.close()
    assert not res.alerts
    [peek] = res.of_type("net.tx.peek")
    assert (peek["peer"], peek["port"], peek["bytes"], peek["hex"]) == (
        "127.0.0.1",
        port,
        5,
        b"hello".hex(),
    )
    [sock] = res.of_type("net.socket")
    assert sock["family_name"] == "AF_INET" and sock["decision"] == "ALLOW"


@pytest.mark.parametrize("name,nr", [("sendmsg", "46"), ("sendmmsg", "307")])
def test_sendmsg_traced(name, nr, probe):
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))
    srv.settimeout(2)
    port = srv.getsockname()[1]
    try:
        extra = ["1", "0"] if name == "sendmmsg" else ["0"]
        res = run_bubble(
            [probe, "sys", nr, "sock:2:2", f"msg:ping@sa4:127.0.0.1:{port}", *extra],
            ["--deny-net=0", "--trace-net", "--peek-tx=8"],
        )
        if name == "sendmsg":
            assert srv.recv(100) == b"ping"
    finally:
        srv.close()
    [peek] = res.of_type("net.tx.peek")
    assert (peek["syscall"], peek["peer"], peek["port"], peek["hex"]) == (
        name,
        "127.0.0.1",
        port,
        b"ping".hex(),
    )


def test_exec_logged_with_notify_exec(probe):
    res = run_bubble(["/bin/sh", "-c", "/bin/echo hello there"], ["--notify-exec"])
    assert res.stdout == "hello there\n"
    execs = [e for e in res.of_type("process.spawn") if e.get("syscall") == "execve"]
    assert [e["exe"] for e in execs] == ["/bin/sh", "/bin/echo"]
    assert execs[1]["argv"] == ["/bin/echo", "hello", "there"]


def test_every_row_is_exercised():
    names = {r.name for r in TABLE}
    covered = (
        set(FS_CASES)
        | {r.name for r in SYS_ROWS}
        | {
            "socket",
            "socketpair",
            "connect",
            "bind",
            "listen",
            "sendto",
            "sendmsg",
            "sendmmsg",
            "execve",
            "execveat",
            "exit_group",
        }
    )
    assert names <= covered, f"rows without a probe case: {sorted(names - covered)}"


def test_execveat_logged(probe):
    res = run_bubble(
        [probe, "sys", "322", "cwd", "s:/bin/true", "null", "null", "0"], ["--notify-exec"]
    )
    [spawn] = [e for e in res.of_type("process.spawn") if e.get("syscall") == "execveat"]
    assert spawn["exe"] == "/bin/true" and res.exit["exit_code"] == 0
