"""The network wall (DESIGN §2.3): under `--deny-net=1` the target runs in a fresh network
namespace, so no packet can leave whatever the supervisor answers.

Inside, `lo` is up and every address is routed to it (`local 0.0.0.0/0` and `local ::/0` in
the local table, KERNEL-NOTES fact 15): a connect to any address behaves as on a host whose
network is present but unreachable, and a server started inside (Bubble's simulated internet)
receives whatever the target sends anywhere.

Where it runs: `enter()` in the forked child, before the privilege drop (as root, root makes
the namespace; otherwise a user namespace that maps our uid to itself gives us
CAP_NET_ADMIN over it, and exec with a non-zero uid then leaves the target with an empty
capability set there). Seccomp stays the eyes: the supervisor asks `walled()` whether a
caller sits in another namespace than its own before it lets an AF_INET/AF_INET6 socket be
created; where the namespace could not be made, sockets are denied at `socket()` as before.

Starting something inside the wall (issue "simulated internet"): register a callable in
`INSIDE`. `enter()` calls each, in the child, right after `lo` is configured and before the
privilege drop, Landlock and the seccomp filter, so what it starts is unfiltered, runs with
the launcher's privileges and lives in the target's namespace. It must not block; a server
forks (twice, so the keeper, a subreaper, adopts it rather than the target) and returns.

Netlink is packed here by hand, three messages, measured against the alternatives on this
machine (docs in the closing note of issue "Network intent"): importing pyroute2 costs
357-598 ms (the whole launcher starts in 55-85 ms); `ip -batch` costs 2.5-8 ms per run and,
in a user namespace with a non-zero uid, exec drops the capabilities it needs (ambient
capabilities would have to be raised and cleared around it); these messages cost < 0.2 ms.
"""

from __future__ import annotations

import os
import struct
from _socket import socket as _sock  # the C module: `socket` costs start-up time

from bubble.sandbox import _abi
from bubble.sandbox._libc import map_own_ids, setns, unshare

TYPE_CHECKING = False  # `typing` costs start-up time; mypy still reads this block
if TYPE_CHECKING:
    from collections.abc import Callable

    from bubble.policy import Policy

CLONE_NEWNET = 0x40000000
# Test hook, the operator's environment only (like BUBBLE_TEST_LANDLOCK_ABI): behave as if
# this machine had no network namespaces, to exercise the fallback.
NO_NETNS_ENV = "BUBBLE_TEST_NO_NETNS"

# Components started inside the wall before the target execs (see the module docstring).
INSIDE: list[Callable[[Policy], None]] = []

_NETLINK_ROUTE = 0
_RTM_NEWLINK, _RTM_NEWROUTE = 16, 24
_NLM_F_REQUEST, _NLM_F_ACK, _NLM_F_EXCL, _NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
_NLMSG_ERROR = 2
_IFF_UP = 0x1
_RT_TABLE_LOCAL, _RTPROT_BOOT, _RT_SCOPE_HOST, _RTN_LOCAL = 255, 3, 254, 2
_RTA_OIF = 4
_LO_INDEX = 1  # `lo` is always interface 1 in a new namespace


def plan(policy: Policy) -> tuple[bool, list[str]]:
    """(whether the child should build the wall, notes on why not). Cheap checks only; the
    child may still fail, and then the supervisor denies at socket() (see `walled`)."""
    if not policy.deny_net:
        return False, []
    why = ""
    if os.environ.get(NO_NETNS_ENV):
        why = f"network namespaces disabled (test hook {NO_NETNS_ENV})"
    elif not os.path.exists("/proc/self/ns/net"):
        why = "this kernel has no network namespaces"
    elif os.geteuid() != 0 and _sysctl("/proc/sys/user/max_user_namespaces") == "0":
        why = "user namespaces are disabled (user.max_user_namespaces = 0) and bubble is not root"
    if not why:
        return True, []
    return False, [fallback_note(why)]


def fallback_note(why: str) -> str:
    return (
        f"{why}: no network wall, so sockets other than AF_UNIX stream are denied at "
        "socket() and alerts cannot name the destination"
    )


def check_stdio(policy: Policy) -> None:
    """Refuse a socket from outside the wall as the target's stdin/stdout/stderr (the only
    descriptors it inherits) unless it is AF_UNIX stream/seqpacket, whose peer is fixed.

    A launcher can hand one over, and it is outside the network namespace: an unconnected
    UDP socket sends anywhere by `sendmsg` with an address written after our check, a TCP
    one connects by TCP fast-open, an AF_UNIX datagram one reaches any named socket of the
    host, and with `dup2` the target can put it under a descriptor number we checked as
    another socket. Refused before anything runs (issue "Hardening, round 2", finding 3)."""
    if not policy.deny_net:
        return
    import stat

    from bubble.errors import UsageError

    for fd in (0, 1, 2):
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            sock = _sock(fileno=os.dup(fd))
        except OSError:
            continue  # closed, or not a socket we can look at: nothing to hand over
        try:
            family, kind = sock.family, sock.type & 0xF
        finally:
            sock.close()
        if family == _abi.AF_UNIX and kind in (1, 5):  # SOCK_STREAM, SOCK_SEQPACKET
            continue
        name = _abi.AF_NAMES.get(family, f"AF_{family}")
        kind_name = _abi.SOCK_NAMES.get(kind, f"SOCK_{kind}")
        raise UsageError(
            f"fd {fd} is a {name} {kind_name} socket from outside the network wall: under "
            "--deny-net=1 the target could send through it to the host",
            "give the program a pipe, a file or an AF_UNIX stream socket, or pass --deny-net=0",
        )


def _sysctl(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return ""


def enter(policy: Policy, spare: int = -1) -> bool:
    """Move the calling process into a new network namespace and configure it. False when
    the kernel refuses the namespace (the target then runs without the wall, and the
    supervisor denies at socket()); OSError when it was made but could not be set up.
    `spare`: a namespace made ahead by `make_spare` (fork server) to join instead."""
    if spare >= 0 and _join(spare):
        for start in INSIDE:
            start(policy)
        return True
    try:
        if os.geteuid() == 0:
            unshare(CLONE_NEWNET)
        else:
            _unprivileged()
    except OSError:
        return False
    configure_loopback()
    for start in INSIDE:
        start(policy)
    return True


def _join(spare: int) -> bool:
    try:
        setns(spare, CLONE_NEWNET)
    except OSError:
        return False  # make one here instead
    finally:
        os.close(spare)
    return True


# The fork server's spare wall (issue 14): making a namespace and configuring `lo` took
# 4.6-10 ms of every run between the request and the target's exec (docs/benchmarks.md). The
# server makes the next run's namespace while it waits for the request; each spare is made
# fresh, configured as `enter` would, held only as a descriptor (no process is in it, so
# nothing else can reach it through /proc), and given to exactly one run, whose child joins
# it with setns. The server's copy is closed at the fork; the launcher's and the keeper's
# once the child is forked.
SPARE: list[int] = []  # in a forked launcher: the descriptor of its spare, if it got one


def make_spare() -> int:
    """A new, configured network namespace as a descriptor; the calling process stays in
    its own. Root only (setns back to our namespace needs CAP_SYS_ADMIN over it)."""
    flags = os.O_RDONLY | os.O_CLOEXEC
    ours = os.open("/proc/self/ns/net", flags)
    try:
        unshare(CLONE_NEWNET)
        try:
            configure_loopback()
            return os.open("/proc/self/ns/net", flags)
        finally:
            try:
                setns(ours, CLONE_NEWNET)
            except OSError as err:  # never go on from inside a run's namespace
                raise RuntimeError(f"cannot return to our network namespace: {err}") from err
    finally:
        os.close(ours)


def take_spare() -> int:
    """This launcher's spare namespace (then it is the caller's to close), or -1."""
    return SPARE.pop() if SPARE else -1


def _unprivileged() -> None:
    try:
        unshare(CLONE_NEWNET)  # we may already own a user namespace (--pidns, a mount one)
        return
    except PermissionError:
        pass
    unshare(_abi.CLONE_NEWUSER | CLONE_NEWNET)
    try:
        map_own_ids()
    except OSError as err:
        # Inside a user namespace without a mapping nothing works: this is no fallback case.
        raise RuntimeError(f"cannot map our uid in the new user namespace: {err}") from err


def _request(kind: int, flags: int, body: bytes, seq: int) -> bytes:
    return struct.pack("=IHHII", 16 + len(body), kind, flags, seq, 0) + body


def _attr(kind: int, payload: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(payload), kind) + payload


def configure_loopback() -> None:
    """`ip link set lo up`, `ip route add local 0.0.0.0/0 dev lo table local` and the same
    for `::/0`, as netlink requests, each acknowledged."""
    ack = _NLM_F_REQUEST | _NLM_F_ACK
    up = struct.pack("=BxHiII", 0, 0, _LO_INDEX, _IFF_UP, _IFF_UP)  # struct ifinfomsg
    messages = [_request(_RTM_NEWLINK, ack, up, 1)]
    for seq, family in ((2, _abi.AF_INET), (3, _abi.AF_INET6)):
        rtmsg = struct.pack(
            "=BBBBBBBBI",
            family,
            0,  # dst_len: the whole address space
            0,
            0,
            _RT_TABLE_LOCAL,
            _RTPROT_BOOT,
            _RT_SCOPE_HOST,
            _RTN_LOCAL,
            0,
        )
        body = rtmsg + _attr(_RTA_OIF, struct.pack("=i", _LO_INDEX))
        messages.append(_request(_RTM_NEWROUTE, ack | _NLM_F_CREATE | _NLM_F_EXCL, body, seq))
    nl = _sock(_abi.AF_NETLINK, 3, _NETLINK_ROUTE)  # SOCK_RAW
    try:
        nl.bind((0, 0))
        for message in messages:
            nl.send(message)
            _check_ack(nl.recv(4096))
    finally:
        nl.close()


def _check_ack(reply: bytes) -> None:
    """Raise OSError for a negative NLMSG_ERROR answer (0 is the acknowledgement)."""
    if len(reply) < 20:
        raise OSError(0, "short netlink reply while configuring lo")
    kind = struct.unpack_from("=H", reply, 4)[0]
    if kind != _NLMSG_ERROR:
        raise OSError(0, f"unexpected netlink reply type {kind} while configuring lo")
    error = -struct.unpack_from("=i", reply, 16)[0]
    if error:
        raise OSError(error, f"configuring lo in the network namespace: {os.strerror(error)}")


_OWN: list[int] = []


def _netns_inode(pid: int | str) -> int:
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def walled(pid: int) -> bool:
    """True if `pid` (a thread of the target) is in another network namespace than ours:
    whatever it sends cannot leave this machine. Asked from the supervisor."""
    if not _OWN:
        _OWN.append(_netns_inode("self"))
    try:
        return _netns_inode(pid) != _OWN[0]
    except OSError:
        return False  # gone, or not ours to look at: the safe answer is "no wall"
