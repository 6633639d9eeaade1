"""Truth tables of `sandbox/decide.py::decide()` (issue 11 item 7): every action each row
category can produce, under every policy combination that changes it. The tables are the
specification; a change of behaviour must change a row here.

Contexts are what the decoder would have produced. The caller pid is this test process: the
few facts decide() asks of /proc (does a path exist, is /proc/N/fd/1 the caller's own, the
parent for a spawn event) are then real and known."""

from __future__ import annotations

import errno
import os

import pytest

from bubble import events
from bubble.policy import Policy
from bubble.sandbox import decide as d
from bubble.sandbox.syscalls import BY_NAME

SCOPE = "/srv/out"
PID = os.getpid()

# Every combination of the policy flags decide_fs reads (--fs-overlay with write scopes is
# refused by Policy, so it has no column).
POLICIES = {
    "open": Policy(deny_fs=False),
    "deny": Policy(),
    "scoped": Policy(write=(SCOPE,)),
    "open+scoped": Policy(deny_fs=False, write=(SCOPE,)),
    "layer": Policy(fs_overlay=""),
    "open+layer": Policy(deny_fs=False, fs_overlay=""),
}
COLUMNS = tuple(POLICIES)

# Outcome codes: C continue with fs.write ALLOW; T attempt (carried out by the supervisor for
# its `result`, else a continue; fs.write ALLOW); S continue with fs.write ALLOW and `scope`;
# G guarded (under the layer: carried out on a layer object, else the alert, never a
# continue); A deny EPERM with a policy.alert; N deny EEXIST with fs.noop; P perform (alert on refusal);
# E deny ENOSYS with an alert; I:<source> inject that source.
# (row, ctx, how_flags) -> outcomes in COLUMNS order.
FS_TABLE = [
    ("openat", {"path": f"{SCOPE}/f"}, None, "T A S T T T"),
    ("openat", {"path": "/etc/passwd"}, None, "T A A T T T"),
    ("open", {"path": "/dev/null"}, None, "T I:/dev/null I:/dev/null T I:/dev/null I:/dev/null"),
    ("creat", {"path": "/dev/stderr"}, None, "T I:fd:2 I:fd:2 T I:fd:2 I:fd:2"),
    ("openat", {"path": "/proc/self/fd/1"}, None, "T I:fd:1 I:fd:1 T I:fd:1 I:fd:1"),
    ("openat", {"path": f"/proc/{PID}/fd/2"}, None, "T I:fd:2 I:fd:2 T I:fd:2 I:fd:2"),
    ("openat", {"path": "/proc/1/fd/1"}, None, "T A A T T T"),  # someone else's stdout
    ("openat2", {"path": "/etc/x"}, 0, "C E E C C C"),  # read-only openat2: use openat
    ("openat2", {"path": "/etc/x"}, None, "C A A C C C"),  # open_how unreadable
    ("openat2", {"path": f"{SCOPE}/f"}, os.O_WRONLY, "C A S C C C"),
    ("mkdir", {"path": "/tmp"}, None, "T N N T T T"),  # exists: mkdir -p walking down
    ("mkdirat", {"path": f"{SCOPE}/no-such-dir"}, None, "T A S T T T"),
    ("mkdir", {"path": "/no-such-dir-here"}, None, "T A A T T T"),
    ("unlink", {"path": f"{SCOPE}/f"}, None, "T A S T T T"),
    ("rename", {"path": f"{SCOPE}/a", "path2": f"{SCOPE}/b"}, None, "T A S T T T"),
    ("rename", {"path": f"{SCOPE}/a", "path2": "/etc/b"}, None, "T A A T T T"),
    ("renameat2", {"path": "/etc/a", "path2": f"{SCOPE}/b"}, None, "T A A T T T"),
    ("link", {"path": "/etc/shadow", "path2": f"{SCOPE}/l"}, None, "T A A T T T"),
    # symlink's path2 is the link's text, not a place written: only the link path counts
    ("symlink", {"path": f"{SCOPE}/l", "path2": "/etc/passwd"}, None, "T A S T T T"),
    ("truncate", {"path": f"{SCOPE}/f"}, None, "T A S T T T"),
    ("chmod", {"path": f"{SCOPE}/f"}, None, "T A P T G G"),  # no Landlock right: performed
    ("utimensat", {"path": "/etc/passwd"}, None, "T A P T G G"),  # the pinned object decides
    ("fchownat", {"path": f"{SCOPE}/f"}, None, "T A A T G G"),  # never scoped
    ("setxattr", {"path": f"{SCOPE}/f"}, None, "C A A C G G"),
    ("openat", {"path": "relative/not-resolved"}, None, "T A A T T T"),
]


def outcome(dec: d.Decision) -> str:
    """The table's code for a decision, checking that its event matches the action."""
    ev = dec.event
    if dec.action == d.CONTINUE:
        assert isinstance(ev, events.Call) and ev.type == events.FS_WRITE
        assert ev.decision == "ALLOW"
        return "S" if ev.scope else "C"
    if dec.action == d.INJECT:
        assert isinstance(ev, events.Call) and ev.type == events.FS_WRITE
        return "I:" + dec.source
    if dec.action == d.PERFORM:
        assert isinstance(ev, events.Call) and ev.type == events.ALERT and ev.category == "fs"
        return "P"
    if dec.action == d.GUARDED:
        assert isinstance(ev, events.Call) and ev.type == events.FS_WRITE
        assert isinstance(dec.plan, events.Call) and dec.plan.type == events.ALERT
        assert dec.errno == errno.EPERM
        return "G"
    if dec.action == d.ATTEMPT:
        assert isinstance(ev, events.Call) and ev.type == events.FS_WRITE
        assert ev.decision == "ALLOW" and not ev.scope
        return "T"
    assert dec.action == d.DENY and isinstance(ev, events.Call)
    if dec.errno == errno.EEXIST:
        assert ev.type == events.FS_NOOP
        return "N"
    assert ev.type == events.ALERT and ev.category == "fs"
    assert ev.denied == errno.errorcode[dec.errno]
    return {errno.EPERM: "A", errno.ENOSYS: "E"}[dec.errno]


@pytest.mark.parametrize(("name", "ctx", "how", "expected"), FS_TABLE)
def test_fs_truth_table(name, ctx, how, expected):
    row = BY_NAME[name]
    got = [
        outcome(d.decide(row, row.nr, PID, dict(ctx), POLICIES[col], (0,) * 6, how))
        for col in COLUMNS
    ]
    assert dict(zip(COLUMNS, got, strict=True)) == dict(zip(COLUMNS, expected.split(), strict=True))


def test_every_fs_row_denies_outside_a_scope_and_continues_when_open():
    """Exhaustive over the table's fs rows: with --deny-fs=0 every one continues (those the
    supervisor can carry out are attempted, for their result); denied, every one refuses a
    path outside every scope, or leaves it to the supervisor's check."""
    rows = [r for r in BY_NAME.values() if r.category == "fs"]
    assert len(rows) >= 40
    for row in rows:
        ctx = {"path": "/etc/nowhere", "path2": "/etc/nowhere2"}
        got = outcome(d.decide(row, row.nr, PID, dict(ctx), POLICIES["open"], (0,) * 6))
        assert got == ("T" if row.name in d.CARRIED else "C"), row.name
        for col in ("deny", "scoped"):
            got = outcome(d.decide(row, row.nr, PID, dict(ctx), POLICIES[col], (0,) * 6, 2))
            # chmod and the times calls are checked on the object the supervisor pins
            want = "P" if col == "scoped" and row.name in d.PERFORMED else "A"
            assert got == want, (row.name, col)


# ioctl requests (register 1) -> outcome under (deny, open, layer). R: continue, no event;
# G: guarded (see FS_TABLE).
TIOCSTI, SIOCGIFCONF, SIOCSIFFLAGS = 0x5412, 0x8912, 0x8914
FS_IOC_SETFLAGS, BLKGETSIZE64, BLKRRPART, LOOP_CTL_ADD = 0x40086602, 0x80081272, 0x125F, 0x4C80
EXT4_IOC_SHUTDOWN = 0x8004587D
IOCTL_TABLE = [
    (TIOCSTI, "A A A"),  # keystroke injection: denied whatever the file policy
    (EXT4_IOC_SHUTDOWN, "A A A"),
    (SIOCGIFCONF, "R R R"),  # netdev read: reports state
    (SIOCSIFFLAGS, "A A A"),  # netdev write
    (BLKGETSIZE64, "R R R"),
    (BLKRRPART, "A A A"),
    (LOOP_CTL_ADD, "A A A"),
    (FS_IOC_SETFLAGS, "A C G"),  # an inode change: a filesystem write (chattr +i)
]


@pytest.mark.parametrize(("cmd", "expected"), IOCTL_TABLE)
def test_ioctl_truth_table(cmd, expected):
    row = BY_NAME["ioctl"]
    got = []
    for col in ("deny", "open", "layer"):
        dec = d.decide(row, row.nr, PID, {"fd": 3}, POLICIES[col], (3, cmd, 0, 0, 0, 0))
        if dec.action == d.CONTINUE and dec.event is None:
            got.append("R")
            continue
        if dec.action == d.GUARDED:  # under the layer: never a CONTINUE on a host inode
            assert isinstance(dec.plan, events.Call) and dec.plan.type == events.ALERT
            got.append("G")
            continue
        code = "C" if dec.action == d.CONTINUE else "A"
        assert dec.errno == (0 if code == "C" else errno.EPERM)
        if code == "A":
            assert isinstance(dec.event, events.Call) and dec.event.type == events.ALERT
            assert dec.event.category == ("fs" if cmd == FS_IOC_SETFLAGS else "sys")
        got.append(code)
    assert got == expected.split()
    if cmd in (EXT4_IOC_SHUTDOWN, SIOCSIFFLAGS):
        assert isinstance(dec.event, events.Call) and f"{cmd:#x}" in (dec.event.detail or "")


KEEP_CAPS = Policy(keep_root=True, keep_caps=True)


@pytest.mark.parametrize(
    ("modes", "policy", "expected"),
    [
        (0, Policy(), "R"),  # a read: the kernel refuses any setting without CAP_SYS_TIME
        (0, KEEP_CAPS, "A"),  # the target may hold CAP_SYS_TIME: every call is denied
        (1, Policy(), "A"),  # ADJ_OFFSET: a setting
        (None, Policy(), "A"),  # unreadable timex
    ],
)
@pytest.mark.parametrize("name", ["adjtimex", "clock_adjtime"])
def test_adjtime_truth_table(name, modes, policy, expected):
    row = BY_NAME[name]
    dec = d.decide(row, row.nr, PID, {}, policy, (0,) * 6, modes)
    if expected == "R":
        assert dec == d.Decision.cont()
    else:
        assert dec.action == d.DENY and dec.errno == errno.EPERM
        assert isinstance(dec.event, events.Call) and dec.event.type == events.ALERT


@pytest.mark.parametrize("policy", [Policy(), Policy(notify_exec=True, deny_fs=False)])
@pytest.mark.parametrize("name", ["execve", "execveat"])
def test_exec_continues_with_a_spawn_event(name, policy):
    row = BY_NAME[name]
    ctx = {"path": "/bin/true", "argv": ["true"]}
    dec = d.decide(row, row.nr, PID, ctx, policy, (0,) * 6)
    assert dec.action == d.CONTINUE and isinstance(dec.event, events.Spawn)
    assert (dec.event.exe, dec.event.argv, dec.event.ppid) == ("/bin/true", ["true"], os.getppid())


def test_every_sys_row_is_denied_enosys_rows_with_enosys():
    """Exhaustive over the table's remaining rows: whatever the policy, io_uring is answered
    ENOSYS and every other privileged call EPERM, each with an alert."""
    rows = [
        r
        for r in BY_NAME.values()
        if r.category == "sys" and r.name != "ioctl" and not r.rule.startswith("adjtime:")
    ]
    assert {r.rule.split(":")[0] for r in rows} == {"sys", "enosys", "signal", "pid", "prio"} | {
        "seccomp",
        "syslog",
    }
    for row in rows:
        for policy in POLICIES.values():
            dec = d.decide(row, row.nr, PID, {}, policy, (0,) * 6)
            want = errno.ENOSYS if row.rule == "enosys" else errno.EPERM
            assert (dec.action, dec.errno) == (d.DENY, want), row.name
            assert isinstance(dec.event, events.Call) and dec.event.type == events.ALERT
            assert dec.event.denied == errno.errorcode[want]


def test_decision_constructors_refuse_fields_an_action_does_not_use():
    with pytest.raises(ValueError):
        d.Decision.deny(None, 0)
    with pytest.raises(ValueError):
        d.Decision.done(None, -1)
    with pytest.raises(ValueError):
        d.Decision.inject("", None)
    with pytest.raises(ValueError):
        d.Decision.perform(d.Decision.cont())
    with pytest.raises(ValueError):
        d.Decision.send(events.Msg(action="x", message="y"), None)
    assert d.Decision.done(None, 0).errno == 0
    assert d.Decision.cont().event is None and d.Decision.cont().errno == 0


# --- the network category: sandbox/netpolicy.py (decide() hands net rows to it) ----------
# The caller is this process, which is *not* inside a wall: sockets made here are host
# sockets, as a target's would be without a network namespace. Register values name real
# descriptors and real memory of this process.


def _net(policy: Policy, scopes: tuple[str, ...] = ()):
    from bubble.sandbox.decode import Decoder
    from bubble.sandbox.netpolicy import NetPolicy
    from bubble.sandbox.netscope import ConnectScopes

    return NetPolicy(policy, Decoder(), ConnectScopes(scopes) if scopes else None)


def _code(dec: d.Decision) -> str:
    ev = dec.event
    kind = getattr(ev, "type", None)
    if dec.action == d.DENY:
        return f"D:{errno.errorcode[dec.errno]}:{kind}"
    return f"{dec.action}:{kind}"


def _sock(family: int, kind: int):
    import socket

    s = socket.socket(family, kind)
    _open.append(s)
    return s


_open: list[object] = []
OPEN_NET, SEED = Policy(deny_net=False), Policy()
ALERT, NOEV = events.ALERT, None


def test_network_truth_table(tmp_path):
    import ctypes
    import socket
    import struct

    udp, tcp = _sock(socket.AF_INET, socket.SOCK_DGRAM), _sock(socket.AF_INET, socket.SOCK_STREAM)
    unix_a, _unix_b = socket.socketpair()
    _open.extend((unix_a, _unix_b))
    data = ctypes.create_string_buffer(b"payload", 7)
    iov = (ctypes.c_uint64 * 2)(ctypes.addressof(data), 7)
    hdr = struct.pack("<QI4xQQQQi4x", 0, 0, ctypes.addressof(iov), 1, 0, 0, 0)
    msg = ctypes.create_string_buffer(hdr, len(hdr))
    where = {"family": 2, "peer": "192.0.2.1", "port": 80}
    scope = ("192.0.2.0/24:80",)
    # (policy, scopes, row, args, ctx, expected code)
    rows = [
        (OPEN_NET, (), "socket", (2, 1, 0), {}, f"continue:{events.NET_SOCKET}"),
        (OPEN_NET, (), "connect", (tcp.fileno(),), where, f"continue:{events.NET_CONNECT}"),
        (OPEN_NET, (), "sendto", (udp.fileno(),), where, f"continue:{events.NET_SEND}"),
        (OPEN_NET, (), "sendto", (udp.fileno(),), {**where, "hex": "00"}, "continue:net.tx.peek"),
        (OPEN_NET, (), "bind", (3,), {"family": 1, "peer": "/tmp/s"}, f"D:EPERM:{ALERT}"),
        (
            OPEN_NET,
            (),
            "bind",
            (3,),
            {"family": 1, "peer": "@abstract"},
            f"continue:{events.NET_BIND}",
        ),
        (
            Policy(deny_net=False, deny_fs=False),
            (),
            "bind",
            (3,),
            {"family": 1, "peer": "/tmp/s"},
            f"continue:{events.NET_BIND}",
        ),
        (SEED, (), "socket", ((1 << 32) | 1, 1, 0), {}, f"continue:{events.NET_SOCKET}"),
        (SEED, (), "socket", (2, 1, 0), {}, f"D:EPERM:{ALERT}"),  # no wall here
        (SEED, (), "socket", (17, 3, 0), {}, f"D:EPERM:{ALERT}"),
        (
            SEED,
            (),
            "connect",
            (3,),
            {"family": 1, "peer": str(tmp_path / "none")},
            f"D:ENOENT:{events.NET_CONNECT}",
        ),
        (SEED, (), "connect", (3,), {"family": 1, "peer": str(tmp_path)}, f"D:EPERM:{ALERT}"),
        (SEED, (), "connect", (tcp.fileno(),), where, f"D:EPERM:{ALERT}"),
        (SEED, scope, "connect", (tcp.fileno(),), where, f"connect:{events.NET_CONNECT}"),
        (SEED, scope, "connect", (tcp.fileno(),), {**where, "port": 81}, f"D:EPERM:{ALERT}"),
        (
            Policy(net_sim=True),
            scope,
            "connect",
            (tcp.fileno(),),
            where,
            f"connect:{events.NET_CONNECT}",
        ),
        (
            SEED,
            (),
            "connect",
            (udp.fileno(),),
            {**where, "port": 53},
            f"D:EPERM:{ALERT}",
        ),  # host socket
        (SEED, (), "listen", (tcp.fileno(), 5), {}, f"D:EPERM:{ALERT}"),
        (SEED, (), "bind", (tcp.fileno(),), where, f"D:EPERM:{ALERT}"),
        (SEED, (), "sendto", (unix_a.fileno(), 0, 1, 0, 0, 0), {}, "continue:None"),
        (SEED, (), "sendto", (udp.fileno(), 0, 1, 0, 0, 0), {}, f"D:EPERM:{ALERT}"),
        (SEED, (), "sendto", (udp.fileno(), 0, 1, 0, 1, 16), where, f"D:EPERM:{ALERT}"),
        (SEED, (), "sendmsg", (unix_a.fileno(), ctypes.addressof(msg), 0), {}, "continue:None"),
        # with scopes: a stream sendmsg is made by the supervisor; a host socket it did not
        # install is refused; sendto without an address decides on registers as before
        (SEED, scope, "sendmsg", (unix_a.fileno(), ctypes.addressof(msg), 0), {}, "send:None"),
        (SEED, scope, "sendmsg", (udp.fileno(), ctypes.addressof(msg), 0), {}, f"D:EPERM:{ALERT}"),
        (SEED, scope, "sendto", (unix_a.fileno(), 0, 1, 0, 0, 0), {}, "continue:None"),
    ]
    got = []
    for policy, scopes, name, args, ctx, _want in rows:
        row = BY_NAME[name]
        args = tuple(args) + (0,) * (6 - len(args))
        dec = _net(policy, scopes).decide(row, row.nr, PID, dict(ctx), args)
        got.append(_code(dec))
        if dec.plan is not None and hasattr(dec.plan, "close"):
            dec.plan.close()
    assert got == [want for *_, want in rows]


def test_a_scope_sends_from_a_socket_it_installed():
    """A host datagram socket the supervisor installed (its inode in `ours`): an in-scope
    send is planned on our copy of it, an out-of-scope one refused."""
    import ctypes
    import socket
    import struct

    udp = _sock(socket.AF_INET, socket.SOCK_DGRAM)
    net = _net(SEED, ("127.0.0.1:9",))
    net.ours.add(os.fstat(udp.fileno()).st_ino)
    payload = ctypes.create_string_buffer(b"hi", 2)
    row = BY_NAME["sendto"]

    def send(port: int) -> d.Decision:
        addr = ctypes.create_string_buffer(
            struct.pack("<HH4s8x", 2, socket.htons(port), socket.inet_aton("127.0.0.1")), 16
        )
        _open.append(addr)
        args = (udp.fileno(), ctypes.addressof(payload), 2, 0, ctypes.addressof(addr), 16)
        return net.decide(row, row.nr, PID, {}, args)

    ok, out = send(9), send(10)
    assert ok.action == d.SEND and ok.plan.host and not ok.plan.replace
    assert ok.event.scope == "127.0.0.1:9" and ok.event.bytes == 2
    ok.plan.close()
    assert (out.action, out.errno, out.event.port) == (d.DENY, errno.EPERM, 10)
