"""UDP sends to a connect scope (issue 11 item 2): the supervisor reads each destination and
payload once and sends them from a socket of its own in the host's network, installed in
place of the target's, so the reply reaches the target's own descriptor. UDP listeners on the
host's 127.0.0.1 and ::1 prove what arrived, and that nothing else did."""

from __future__ import annotations

import socket
import textwrap
import threading

import pytest

from tests.conftest import AS_ROOT, run_bubble
from tests.kernel.conftest import SYSTEM_PYTHON


class Udp:
    """A UDP listener on loopback that records every datagram and answers b"PONG"."""

    def __init__(self, family: int = socket.AF_INET, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.port = self.sock.getsockname()[1]
        self.got: list[bytes] = []
        self.sock.settimeout(0.2)
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop:
            try:
                data, addr = self.sock.recvfrom(70000)
            except TimeoutError:
                continue
            except OSError:
                return
            self.got.append(data)
            self.sock.sendto(b"PONG", addr)

    def close(self) -> list[bytes]:
        self.stop = True
        self.thread.join(2)
        self.sock.close()
        return self.got


@pytest.fixture
def udp():
    made: list[Udp] = []

    def make(family: int = socket.AF_INET, host: str = "127.0.0.1") -> Udp:
        made.append(Udp(family, host))
        return made[-1]

    yield make
    for one in made:
        one.close()


# Each step prints one line: "<name> <what the program saw>".
CLIENT = textwrap.dedent(
    """
    import ctypes, os, socket, struct, sys
    ok, other, ok6 = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    libc = ctypes.CDLL(None, use_errno=True)

    def reply(s):
        s.settimeout(5)
        try:
            data, addr = s.recvfrom(100)
            return f"{data.decode()} from {addr[0]}:{addr[1]}"
        except OSError as e:
            return f"no reply ({e})"

    def step(name, fn):
        try:
            print(name, fn(), flush=True)
        except OSError as e:
            print(name, f"errno {e.errno}", flush=True)

    def sendto_ok():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        fd = s.fileno()
        n = s.sendto(b"SENDTO", ("127.0.0.1", ok))
        return f"{n} fd={s.fileno() == fd} " + reply(s)

    def options_kept():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 7)
        s.setsockopt(socket.IPPROTO_IP, 8, 1)  # IP_PKTINFO: the reply's ancillary data
        before = os.fstat(s.fileno()).st_ino
        s.sendto(b"OPTS", ("127.0.0.1", ok))
        s.settimeout(5)
        _data, anc, _f, _a = s.recvmsg(10, 64)
        swapped = os.fstat(s.fileno()).st_ino != before
        return f"{swapped} {s.getsockopt(socket.IPPROTO_IP, socket.IP_TTL)} {[(l, t) for l, t, _ in anc]}"

    def sendto_other():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        return s.sendto(b"OTHER", ("127.0.0.1", other))

    def sendmsg_v6():
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        n = s.sendmsg([b"SEND", b"MSG6"], [], 0, ("::1", ok6))
        return f"{n} " + reply(s)

    def v4_on_v6():
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        return f"{s.sendto(b'MAPPED', ('::ffff:127.0.0.1', ok))} " + reply(s)

    def again_on_ours():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto(b"FIRST", ("127.0.0.1", ok)); reply(s)
        n = s.sendto(b"SECOND", ("127.0.0.1", ok))
        return f"{n} " + reply(s)

    def escape_from_ours():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto(b"THIRD", ("127.0.0.1", ok)); reply(s)
        return s.sendto(b"ESCAPE", ("127.0.0.1", other))

    def connected_sendmsg():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(("127.0.0.1", ok))
        return f"{s.sendmsg([b'CONNECTED'])} " + reply(s)

    class Iov(ctypes.Structure):
        _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
    class Hdr(ctypes.Structure):
        _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32),
                    ("iov", ctypes.c_void_p), ("iovlen", ctypes.c_size_t),
                    ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                    ("flags", ctypes.c_int), ("pad", ctypes.c_uint32), ("msg_len", ctypes.c_uint32), ("pad2", ctypes.c_uint32)]
    keep = []
    def sin(port):
        a = ctypes.create_string_buffer(struct.pack("<HH4s8x", socket.AF_INET, socket.htons(port), socket.inet_aton("127.0.0.1")), 16)
        keep.append(a); return a
    def mmsg(ports, payloads):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        vec = (Hdr * len(ports))()
        for i, (port, data) in enumerate(zip(ports, payloads)):
            buf = ctypes.create_string_buffer(data, len(data)); keep.append(buf)
            iov = Iov(ctypes.addressof(buf), len(data)); keep.append(iov)
            vec[i].name, vec[i].namelen = ctypes.addressof(sin(port)), 16
            vec[i].iov, vec[i].iovlen = ctypes.addressof(iov), 1
        n = libc.sendmmsg(s.fileno(), vec, len(ports), 0)
        if n < 0:
            return f"errno {ctypes.get_errno()}"
        return f"{n} lens={[vec[i].msg_len for i in range(len(ports))]}"

    step("sendto_ok", sendto_ok)
    step("options_kept", options_kept)
    step("sendto_other", sendto_other)
    step("sendmsg_v6", sendmsg_v6)
    step("v4_on_v6", v4_on_v6)
    step("again_on_ours", again_on_ours)
    step("escape_from_ours", escape_from_ours)
    step("connected_sendmsg", connected_sendmsg)
    step("mmsg_mixed", lambda: mmsg([ok, other], [b"MIXED1", b"MIXED2"]))
    step("mmsg_ok", lambda: mmsg([ok, ok], [b"MM1", b"MM22"]))
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    step("unreadable", lambda: libc.sendto(u.fileno(), ctypes.c_void_p(8), 4, 0, sin(ok), 16) == -1 and ctypes.get_errno())
    """
)


def _lines(stdout: str) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in stdout.splitlines() if " " in line)


def test_datagrams_to_a_scope_leave_from_the_supervisor_and_replies_come_back(udp):
    ok, other, ok6 = udp(), udp(), udp(socket.AF_INET6, "::1")
    r = run_bubble(
        [SYSTEM_PYTHON, "-c", CLIENT, str(ok.port), str(other.port), str(ok6.port)],
        [f"--allow-connect=127.0.0.1:{ok.port}", f"--allow-connect=[::1]:{ok6.port}"],
        timeout=90,
    )
    out = _lines(r.stdout)
    assert out["sendto_ok"] == f"6 fd=True PONG from 127.0.0.1:{ok.port}", r.stdout + r.stderr
    assert out["options_kept"] == "True 7 [(0, 8)]"  # our socket took its place, options too
    assert out["sendto_other"] == "errno 1"
    assert out["sendmsg_v6"] == f"8 PONG from ::1:{ok6.port}"
    assert out["v4_on_v6"] == f"6 PONG from ::ffff:127.0.0.1:{ok.port}"
    assert out["again_on_ours"] == f"6 PONG from 127.0.0.1:{ok.port}"
    assert out["escape_from_ours"] == "errno 1"
    assert out["connected_sendmsg"] == f"9 PONG from 127.0.0.1:{ok.port}"
    assert out["mmsg_mixed"] == "errno 1"  # one destination outside: nothing is sent
    assert out["mmsg_ok"] == "2 lens=[3, 4]"  # msg_len written back as the kernel does
    assert out["unreadable"] == "14"  # EFAULT: the payload is not mapped
    got = ok.close()
    assert got == [
        b"SENDTO", b"OPTS", b"MAPPED", b"FIRST", b"SECOND", b"THIRD", b"CONNECTED", b"MM1", b"MM22",
    ]  # fmt: skip
    assert ok6.close() == [b"SENDMSG6"]
    assert other.close() == []
    sent = [e for e in r.of_type("net.send") if e.get("scope")]
    assert {e["scope"] for e in sent} == {f"127.0.0.1:{ok.port}", f"[::1]:{ok6.port}"}
    assert any(e["syscall"] == "sendmmsg" and e["bytes"] == 3 for e in sent)
    denied = [e for e in r.alerts if e.get("syscall", "").startswith("send")]
    assert {e["port"] for e in denied if e["denied"] == "EPERM"} == {other.port}, denied
    [fault] = [e for e in denied if e["denied"] == "EFAULT"]
    assert fault["port"] == ok.port and "unreadable" in fault["detail"]
    assert any("outside every connect scope" in e.get("detail", "") for e in denied)


RACE = textwrap.dedent(
    """
    import ctypes, socket, struct, sys, threading
    libc = ctypes.CDLL(None, use_errno=True)
    good, bad = int(sys.argv[1]), int(sys.argv[2])
    def addr(port):
        return struct.pack("<HH4s8x", socket.AF_INET, socket.htons(port), socket.inet_aton("127.0.0.1"))
    name = ctypes.create_string_buffer(addr(good), 16)
    data = ctypes.create_string_buffer(b"A" * 32, 32)
    stop = False
    def flip():
        while not stop:
            ctypes.memmove(name, addr(bad), 16); ctypes.memmove(data, b"B" * 32, 32)
            ctypes.memmove(name, addr(good), 16); ctypes.memmove(data, b"A" * 32, 32)
    t = threading.Thread(target=flip); t.start()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent = 0
    for _ in range(300):
        if libc.sendto(s.fileno(), data, 32, 0, name, 16) == 32:
            sent += 1
    stop = True; t.join()
    print("sent", sent)
    """
)


def test_a_thread_rewriting_address_and_payload_cannot_redirect_a_send(udp):
    ok, other = udp(), udp()
    r = run_bubble(
        [SYSTEM_PYTHON, "-c", RACE, str(ok.port), str(other.port)],
        [f"--allow-connect=127.0.0.1:{ok.port}"],
        timeout=120,
    )
    assert r.stdout.startswith("sent "), r.stderr[-400:]
    sent = int(r.stdout.split()[1])
    got = ok.close()
    assert other.close() == []
    # Exactly what the supervisor read once, for each send it answered with 32: whole
    # datagrams of the two payloads' bytes (a read may straddle a flip), nothing more.
    assert len(got) == sent > 0
    assert all(len(d) == 32 and set(d) <= {ord("A"), ord("B")} for d in got)
    allowed = [e for e in r.of_type("net.send") if e.get("scope")]
    assert len(allowed) == sent and {e["port"] for e in allowed} == {ok.port}
    assert {e["port"] for e in r.alerts if e.get("syscall") == "sendto"} <= {other.port}


STREAMS = textwrap.dedent(
    """
    import array, ctypes, os, socket, struct, sys, threading
    libc = ctypes.CDLL(None, use_errno=True)
    ok, other, uok = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    # AF_UNIX stream with a descriptor passed: what the peer gets is the same open file
    a, b = socket.socketpair()
    r, w = os.pipe()
    n = a.sendmsg([b"fd", b"!"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [w]))])
    msg, anc, _flags, _addr = b.recvmsg(10, socket.CMSG_SPACE(4))
    passed = array.array("i", anc[0][2])[0]
    os.write(passed, b"through the passed fd")
    print("unix", n, msg, os.read(r, 100), flush=True)
    # a blocking sendmsg bigger than the socket buffer: finished by a worker thread
    big = bytes(range(256)) * 8192  # 2 MiB
    got = bytearray()
    def read_all():
        while len(got) < len(big):
            got.extend(b.recv(65536))
    reader = threading.Thread(target=read_all); reader.start()
    sent = calls = 0
    while sent < len(big):
        sent += a.sendmsg([big[sent:]]); calls += 1
    reader.join()
    print("big", sent, bytes(got) == big, calls <= 4, flush=True)
    # TCP on a scoped endpoint: the supervisor's socket
    t = socket.create_connection(("127.0.0.1", ok))
    print("tcp", t.sendmsg([b"HEL", b"LO"]), t.recv(10), flush=True)
    # A thread swaps a host UDP socket of the scope onto an AF_UNIX descriptor while
    # sendmsg names another endpoint: the kernel would honour msg_name on the UDP socket.
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(5)
    u.sendto(b"PING", ("127.0.0.1", uok)); u.recv(10)  # now a host socket of the scope
    c, peer = socket.socketpair()
    peer.setblocking(False)
    victim = os.dup(c.fileno())
    name = ctypes.create_string_buffer(struct.pack("<HH4s8x", socket.AF_INET, socket.htons(other), socket.inet_aton("127.0.0.1")), 16)
    data = ctypes.create_string_buffer(b"ESCAPE", 6)
    iov = (ctypes.c_uint64 * 2)(ctypes.addressof(data), 6)
    hdr = struct.pack("<QI4xQQQQi4x", ctypes.addressof(name), 16, ctypes.addressof(iov), 1, 0, 0, 0)
    msghdr = ctypes.create_string_buffer(hdr, len(hdr))
    stop = False
    def flip():
        while not stop:
            os.dup2(u.fileno(), victim); os.dup2(c.fileno(), victim)
    th = threading.Thread(target=flip); th.start()
    ok_sends = 0
    for _ in range(500):
        ok_sends += libc.sendmsg(victim, msghdr, 0) == 6
        try:
            peer.recv(65536)
        except BlockingIOError:
            pass
    stop = True; th.join()
    print("swap", "done", flush=True)  # msg_name on AF_UNIX stream: EISCONN, as the kernel says
    """
)


def test_stream_sendmsg_in_a_scoped_run_is_made_by_the_supervisor(udp):
    """In a run with scopes a host UDP socket dup2'ed onto a stream descriptor would honour
    the msg_name the kernel reads after a check: the supervisor sends stream sendmsg itself,
    passed descriptors and blocking included, and nothing reaches another endpoint."""
    from tests.kernel.test_connect_scopes import Listener

    tcp, other = Listener(), udp()
    ok = udp()
    try:
        r = run_bubble(
            [SYSTEM_PYTHON, "-c", STREAMS, str(tcp.port), str(other.port), str(ok.port)],
            [f"--allow-connect=127.0.0.1:{tcp.port}", f"--allow-connect=127.0.0.1:{ok.port}"],
            timeout=100,
        )
    finally:
        got_tcp = tcp.close()
    out = _lines(r.stdout)
    assert out["unix"] == "3 b'fd!' b'through the passed fd'", r.stdout + r.stderr[-600:]
    assert out["big"] == "2097152 True True"
    assert out["tcp"] == "5 b'WORLD'"
    assert out["swap"] == "done"
    assert got_tcp == [b"HELLO"]
    assert other.close() == [] and ok.close() == [b"PING"]
    # the sends the swapped-in UDP socket made of the AF_UNIX ones: refused, naming `other`
    assert {e["port"] for e in r.alerts if e.get("syscall") == "sendmsg"} <= {other.port}


@pytest.mark.skipif(not AS_ROOT, reason="runs bubble as nobody from root")
def test_udp_scope_as_a_non_root_operator(udp):
    """A supervisor without privileges asks the wall's sockets (SIOCGSKNS) with the rights it
    holds over the namespace it made, and installs its own socket the same way."""
    import subprocess

    from tests.kernel.conftest import nobody_cmd

    ok, other = udp(), udp()
    code = (
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"print(s.sendto(b'NOBODY', ('127.0.0.1', {ok.port}))); s.settimeout(5); print(s.recv(9))\n"
        f"try: s.sendto(b'NO', ('127.0.0.1', {other.port}))\n"
        "except OSError as e: print('errno', e.errno)\n"
    )
    proc = subprocess.run(
        nobody_cmd(
            ["run", f"--allow-connect=127.0.0.1:{ok.port}", "--", SYSTEM_PYTHON, "-c", code]
        ),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.stdout.split("\n")[:3] == ["6", "b'PONG'", "errno 1"], proc.stderr[-500:]
    assert ok.close() == [b"NOBODY"] and other.close() == []
