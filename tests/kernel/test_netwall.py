"""The network wall (issue "Network intent"): real targets, host listeners on 127.0.0.1/::1
that prove from outside that nothing arrived, and alerts that name where the program wanted
to go. A target resolves a name only after checking it is in its own network namespace."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import threading

import pytest

from bubble.sandbox.selftest import target_python
from tests.conftest import AS_ROOT, run_bubble
from tests.kernel.conftest import SRC, nobody_cmd, parse_events

HOST_NETNS = os.stat("/proc/self/ns/net").st_ino
# The target's first act: refuse to go on unless it sits in another network namespace.
GUARD = (
    "import os, sys\n"
    f"if os.stat('/proc/self/ns/net').st_ino == {HOST_NETNS}:\n"
    "    print('HOST-NAMESPACE', flush=True); sys.exit(3)\n"
)


def py(code: str) -> list[str]:
    return [target_python(), "-I", "-c", GUARD + code]


class Listener:
    """A host socket on loopback that records whatever reaches it."""

    def __init__(self, family: int, kind: int, host: str, port: int = 0) -> None:
        self.sock = socket.socket(family, kind)
        self.sock.bind((host, port))
        if kind == socket.SOCK_STREAM:
            self.sock.listen(8)
        self.sock.settimeout(0.3)
        self.port = self.sock.getsockname()[1]

    def got_anything(self) -> bool:
        try:
            if self.sock.type == socket.SOCK_DGRAM:
                self.sock.recv(4096)
            else:
                self.sock.accept()[0].close()
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def tcp4():
    listener = Listener(socket.AF_INET, socket.SOCK_STREAM, "127.0.0.1")
    yield listener
    listener.close()


@pytest.fixture
def tcp6():
    listener = Listener(socket.AF_INET6, socket.SOCK_STREAM, "::1")
    yield listener
    listener.close()


@pytest.fixture
def udp4():
    listener = Listener(socket.AF_INET, socket.SOCK_DGRAM, "127.0.0.1")
    yield listener
    listener.close()


def _connect_code(family: str, host: str, port: int) -> str:
    return (
        "import socket\n"
        f"s = socket.socket(socket.{family})\n"
        f"try:\n    s.connect(({host!r}, {port})); print('CONNECTED')\n"
        "except OSError as e:\n    print('ERR', e.errno)\n"
        "print('AFTER', flush=True)\n"
    )


def test_create_connection_reaches_nothing_and_names_the_destination(tcp4):
    """Done-when: `socket.create_connection(('127.0.0.1', PORT))` reaches nothing, continues,
    and its alert names 127.0.0.1 and PORT."""
    code = (
        "import socket\n"
        f"try:\n    socket.create_connection(('127.0.0.1', {tcp4.port}))\n"
        "except OSError as e:\n    print('ERR', e.errno)\n"
        "print('AFTER', flush=True)\n"
    )
    res = run_bubble(py(code))
    assert res.stdout.splitlines() == ["ERR 1", "AFTER"], res.stdout + res.stderr
    assert not tcp4.got_anything()
    [alert] = res.alerts
    assert (alert["syscall"], alert["peer"], alert["port"], alert["category"]) == (
        "connect",
        "127.0.0.1",
        tcp4.port,
        "net",
    )
    [sock] = res.of_type("net.socket")
    assert (sock["family_name"], sock["decision"]) == ("AF_INET", "ALLOW")


def test_tcp_over_ipv6_reaches_nothing(tcp6):
    res = run_bubble(py(_connect_code("AF_INET6", "::1", tcp6.port)))
    assert "ERR 1" in res.stdout and "AFTER" in res.stdout
    assert not tcp6.got_anything()
    [alert] = res.alerts
    assert (alert["peer"], alert["port"], alert["family_name"]) == ("::1", tcp6.port, "AF_INET6")


def test_ipv4_mapped_destination_shown_as_ipv4(tcp4):
    res = run_bubble(py(_connect_code("AF_INET6", "::ffff:127.0.0.1", tcp4.port)))
    assert "ERR 1" in res.stdout
    assert not tcp4.got_anything()
    [alert] = res.alerts
    assert (alert["peer"], alert["port"], alert["family_name"]) == (
        "127.0.0.1",
        tcp4.port,
        "AF_INET6",
    )


@pytest.mark.parametrize(
    "name,nr,extra",
    [
        ("sendto", "44", None),
        ("sendmsg", "46", ["0"]),
        ("sendmmsg", "307", ["1", "0"]),
    ],
)
def test_udp_with_an_address_reaches_nothing(name, nr, extra, probe, udp4):
    if name == "sendto":
        args = ["sock:2:2", "s:ping", "4", "0", f"sa4:127.0.0.1:{udp4.port}", "16"]
    else:
        args = ["sock:2:2", f"msg:ping@sa4:127.0.0.1:{udp4.port}", *extra]
    res = run_bubble([probe, "sys", nr, *args])
    assert "errno=EPERM" in res.stdout and "ALIVE" in res.stdout
    assert not udp4.got_anything()
    [alert] = res.alerts
    assert (alert["syscall"], alert["peer"], alert["port"]) == (name, "127.0.0.1", udp4.port)


def test_bind_then_listen_denied_with_addresses():
    code = (
        "import socket\ns = socket.socket()\n"
        "for call in (lambda: s.bind(('127.0.0.1', 8642)), lambda: s.listen(1)):\n"
        "    try:\n        call(); print('OK')\n"
        "    except OSError as e:\n        print('ERR', e.errno)\n"
    )
    res = run_bubble(py(code))
    assert res.stdout.splitlines() == ["ERR 1", "ERR 1"]
    bind, listen = res.alerts
    assert (bind["syscall"], bind["peer"], bind["port"]) == ("bind", "127.0.0.1", 8642)
    assert (listen["syscall"], listen["peer"], listen["port"]) == ("listen", "0.0.0.0", 0)


def _query(name: str, qtype: int, ident: int) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack(">HHHHHH", ident, 0x0100, 1, 0, 0, 0) + labels + struct.pack(">HH", qtype, 1)


# glibc's resolver, spelt out: UDP connect to port 53, then A and AAAA in one sendmmsg.
SENDMMSG = """
import ctypes, socket, struct
libc = ctypes.CDLL(None, use_errno=True)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect(("127.0.0.1", 53))
print("CONNECTED", flush=True)
qs = [bytes.fromhex(h) for h in QUERIES]
bufs = [ctypes.create_string_buffer(q, len(q)) for q in qs]
iovs = [struct.pack("QQ", ctypes.addressof(b), len(q)) for b, q in zip(bufs, qs)]
iovbufs = [ctypes.create_string_buffer(i, 16) for i in iovs]
msgs = b"".join(struct.pack("QI4xQQQQi4xI4x", 0, 0, ctypes.addressof(i), 1, 0, 0, 0, 0)
                for i in iovbufs)
arr = ctypes.create_string_buffer(msgs, len(msgs))
r = libc.sendmmsg(s.fileno(), arr, len(qs), 0)
print("SENDMMSG", r, ctypes.get_errno(), flush=True)
try:
    s.send(qs[0]); print("SENT")
except OSError as e:
    print("SEND-ERR", e.errno)
"""


@pytest.fixture
def dns_listener():
    """A host listener on 127.0.0.1:53 when the port is free (it proves nothing arrived)."""
    try:
        listener = Listener(socket.AF_INET, socket.SOCK_DGRAM, "127.0.0.1", 53)
    except OSError:
        yield None
        return
    yield listener
    listener.close()


def test_glibc_style_dns_query_is_denied_and_decoded(dns_listener):
    queries = [_query("beacon.example", 1, 7).hex(), _query("beacon.example", 28, 8).hex()]
    res = run_bubble(py(f"QUERIES = {queries!r}\n" + SENDMMSG))
    assert "CONNECTED" in res.stdout, res.stdout + res.stderr
    assert "SENDMMSG -1 1" in res.stdout and "SEND-ERR 1" in res.stdout
    if dns_listener is not None:
        assert not dns_listener.got_anything()
    [connect] = [e for e in res.of_type("net.connect") if e.get("port") == 53]
    assert connect["decision"] == "ALLOW" and connect["peer"] == "127.0.0.1"
    mmsg, send = res.alerts
    assert (mmsg["syscall"], mmsg["peer"], mmsg["port"]) == ("sendmmsg", "127.0.0.1", 53)
    assert (mmsg["dns_name"], mmsg["dns_type"]) == ("beacon.example", "A,AAAA")
    assert mmsg["dns_queries"] == ["beacon.example A", "beacon.example AAAA"]
    assert (send["syscall"], send["dns_name"], send["dns_type"]) == (
        "sendto",
        "beacon.example",
        "A",
    )


def test_getaddrinfo_inside_the_wall_names_the_host():
    """Done-when: `getaddrinfo('beacon.example')` yields an alert with dns_name
    beacon.example (the target checked its namespace first: GUARD)."""
    code = (
        "import socket\n"
        "try:\n    socket.getaddrinfo('beacon.example', 80)\n"
        "except OSError as e:\n    print('GAI', e.errno)\n"
        "print('AFTER', flush=True)\n"
    )
    res = run_bubble(py(code), timeout=120)
    assert "HOST-NAMESPACE" not in res.stdout and "AFTER" in res.stdout
    dns = [a for a in res.alerts if a.get("dns_name")]
    assert dns and {a["dns_name"] for a in dns} == {"beacon.example"}, res.alerts
    assert any(a["dns_type"] == "A,AAAA" and a["syscall"] == "sendmmsg" for a in dns)
    assert all(a["port"] == 53 for a in dns)


def test_hostile_dns_payloads_do_not_stop_the_supervisor(probe):
    """Payloads to port 53 built to break a parser: a compression pointer to itself, a
    label running past the end, garbage. Each is denied and logged; the run ends normally."""
    loop = struct.pack(">HHHHHH", 1, 0, 1, 0, 0, 0) + b"\xc0\x0c" + b"\0\x01\0\x01"
    long_label = struct.pack(">HHHHHH", 2, 0, 1, 0, 0, 0) + b"\x3f" + b"a" * 10
    garbage = bytes(range(256))
    for payload in (loop, long_label, garbage):
        code = (
            "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            f"try:\n    s.sendto({payload!r}, ('127.0.0.1', 53))\n"
            "except OSError as e:\n    print('ERR', e.errno)\nprint('AFTER', flush=True)\n"
        )
        res = run_bubble(py(code))
        assert res.stdout.splitlines() == ["ERR 1", "AFTER"], res.stdout + res.stderr
        [alert] = res.alerts
        assert (alert["syscall"], alert["port"]) == ("sendto", 53)
        assert res.exit["exit_code"] == 0


def test_racing_thread_cannot_send_past_the_wall(udp4):
    """One thread flips a sockaddr between 127.0.0.1:53 (a UDP connect the supervisor lets
    through inside the wall) and the host listener, while another connects and writes with
    write(2), which nothing mediates: whatever the race, nothing reaches the host."""
    code = f"""
import ctypes, os, socket, struct, threading
libc = ctypes.CDLL(None, use_errno=True)
lo = socket.inet_aton("127.0.0.1")
addrs = [struct.pack("=H", 2) + struct.pack("!H", p) + lo + bytes(8) for p in (53, {udp4.port})]
buf = ctypes.create_string_buffer(addrs[0], 16)
stop = False
def flip():
    i = 0
    while not stop:
        ctypes.memmove(buf, addrs[i & 1], 16); i += 1
t = threading.Thread(target=flip); t.start()
connected = 0
for _ in range(500):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if libc.connect(s.fileno(), buf, 16) == 0:
        connected += 1
        try:
            os.write(s.fileno(), b"escaped")
        except OSError:
            pass
    s.close()
stop = True; t.join()
print("CONNECTED", connected, flush=True)
"""
    res = run_bubble(py(code), timeout=120)
    assert "CONNECTED" in res.stdout, res.stdout + res.stderr
    assert int(res.stdout.split()[-1]) > 0, "no connect went through: the race was not run"
    assert not udp4.got_anything(), "a datagram left the wall"


@pytest.mark.skipif(not AS_ROOT, reason="needs root to run bubble as another user")
def test_non_root_launcher_builds_the_wall(nobody_src, tcp4, workdir):
    """Bubble run by `nobody`: a user namespace gives it the network namespace; the target
    is inside it, reaches nothing, and the alerts name the destination and the DNS query."""
    query = _query("beacon.example", 1, 9)
    code = (
        GUARD
        + _connect_code("AF_INET", "127.0.0.1", tcp4.port)
        + "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        + f"try:\n    u.sendto({query!r}, ('127.0.0.1', 53))\n"
        + "except OSError as e:\n    print('ERR', e.errno)\n"
    )
    events = workdir / "events.ndjson"
    argv = ["run", "--events", str(events), "--", "/usr/bin/python3", "-I", "-c", code]
    cmd = nobody_cmd(argv)
    cmd[cmd.index(f"PYTHONPATH={SRC}")] = f"PYTHONPATH={nobody_src}"  # with dnslib
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd="/")
    assert "HOST-NAMESPACE" not in proc.stdout
    assert proc.stdout.splitlines() == ["ERR 1", "AFTER", "ERR 1"], proc.stdout + proc.stderr
    assert not tcp4.got_anything()
    alerts = [e for e in parse_events(events.read_text()) if e["type"] == "policy.alert"]
    assert [(a["syscall"], a["peer"], a["port"]) for a in alerts] == [
        ("connect", "127.0.0.1", tcp4.port),
        ("sendto", "127.0.0.1", 53),
    ]
    assert (alerts[1]["dns_name"], alerts[1]["dns_type"]) == ("beacon.example", "A")


def test_without_namespaces_sockets_are_denied_at_socket(tcp4):
    """The fallback (simulated absence): no wall, so socket(AF_INET) itself is denied, and a
    sandbox.msg says why."""
    code = (
        "import os, socket\n"
        f"print('SAME-NS', os.stat('/proc/self/ns/net').st_ino == {HOST_NETNS})\n"
        f"try:\n    socket.create_connection(('127.0.0.1', {tcp4.port}))\n"
        "except OSError as e:\n    print('ERR', e.errno)\n"
    )
    env = {**os.environ, "BUBBLE_TEST_NO_NETNS": "1"}
    res = run_bubble([target_python(), "-I", "-c", code], env=env)
    assert res.stdout.splitlines() == ["SAME-NS True", "ERR 1"]
    assert not tcp4.got_anything()
    [alert] = res.alerts
    assert (alert["syscall"], alert["family_name"]) == ("socket", "AF_INET")
    [note] = [m for m in res.of_type("sandbox.msg") if "network" in m["message"]]
    assert note["action"] == "degraded" and "denied at socket()" in note["message"]


@pytest.mark.parametrize(
    "argv",
    [["/bin/ls", "-la", "/"], ["/usr/bin/id"], ["/usr/bin/getent", "passwd"]],
    ids=["ls", "id", "getent"],
)
def test_name_service_lookups_raise_no_alert(argv):
    res = run_bubble(argv)
    assert res.rc == 0 and res.stdout
    assert not res.alerts, res.alerts


def test_tar_listing_raises_no_alert(workdir):
    archive = workdir / "a.tar"
    subprocess.run(["tar", "-cf", str(archive), "-C", "/etc", "hostname"], check=True)
    os.chmod(archive, 0o644)
    res = run_bubble(["/bin/tar", "-tvf", str(archive)])
    assert res.rc == 0 and "hostname" in res.stdout
    assert not res.alerts, res.alerts


def test_unix_connect_missing_path_is_enoent_existing_is_denied(tmp_path):
    os.chmod(tmp_path, 0o755)
    present = tmp_path / "present.sock"
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(present))
    srv.listen(1)
    srv.settimeout(0.3)
    accepted: list[bool] = []

    def accept() -> None:
        try:
            srv.accept()[0].close()
            accepted.append(True)
        except OSError:
            pass

    waiter = threading.Thread(target=accept)
    waiter.start()
    code = (
        "import socket\n"
        f"for path in ({str(tmp_path / 'absent.sock')!r}, {str(present)!r}):\n"
        "    try:\n        socket.socket(socket.AF_UNIX).connect(path); print('OK')\n"
        "    except OSError as e:\n        print('ERR', e.errno)\n"
    )
    try:
        res = run_bubble([target_python(), "-I", "-c", code])
    finally:
        waiter.join()
        srv.close()
    assert res.stdout.splitlines() == ["ERR 2", "ERR 1"]  # ENOENT, EPERM
    assert not accepted
    [info] = res.of_type("net.connect")
    assert (info["peer"], info["denied"]) == (str(tmp_path / "absent.sock"), "ENOENT")
    [alert] = res.alerts
    assert (alert["peer"], alert["denied"]) == (str(present), "EPERM")
