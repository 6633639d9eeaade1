"""Connect scopes under the network wall: exactly the allowed endpoint is reached (by a socket
the supervisor connects from the host's network), everything else stays behind the wall.
Listeners on the host's loopback prove what arrived."""

from __future__ import annotations

import socket
import subprocess
import textwrap
import threading

import pytest

from tests.conftest import AS_ROOT, run_bubble
from tests.kernel.conftest import SYSTEM_PYTHON, nobody_cmd


class Listener:
    """A TCP or UDP listener on 127.0.0.1 that records what it receives."""

    def __init__(self, kind: int = socket.SOCK_STREAM) -> None:
        self.sock = socket.socket(socket.AF_INET, kind)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.got: list[bytes] = []
        self.kind = kind
        if kind == socket.SOCK_STREAM:
            self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop:
            try:
                if self.kind == socket.SOCK_DGRAM:
                    data, addr = self.sock.recvfrom(4096)
                    self.got.append(data)
                    self.sock.sendto(b"PONG", addr)
                    continue
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            try:
                data = conn.recv(4096)
                self.got.append(data)
                conn.sendall(b"WORLD")
            except OSError:
                pass
            finally:
                conn.close()

    def close(self) -> list[bytes]:
        self.stop = True
        self.thread.join(2)
        self.sock.close()
        return self.got


@pytest.fixture
def listeners():
    made: list[Listener] = []

    def make(kind=socket.SOCK_STREAM) -> Listener:
        made.append(Listener(kind))
        return made[-1]

    yield make
    for lst in made:
        lst.close()


CLIENT = textwrap.dedent(
    """
    import socket, sys
    def tcp(port, blocking=True):
        s = socket.socket()
        if not blocking:
            s.setblocking(False)
            rc = s.connect_ex(("127.0.0.1", port))
            s.setblocking(True)
            import select; select.select([], [s], [], 5)
            rc = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) or rc
        else:
            rc = s.connect_ex(("127.0.0.1", port))
        if rc in (0, 115):
            s.sendall(b"HELLO")
            s.settimeout(5)
            return s.recv(100).decode()
        return f"errno {rc}"
    for spec in sys.argv[1:]:
        mode, port = spec.split(":")
        if mode == "udp":
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            rc = u.connect_ex(("127.0.0.1", int(port)))
            if rc == 0:
                u.send(b"PING")
                u.settimeout(5)
                print(spec, u.recv(100).decode())
            else:
                print(spec, f"errno {rc}")
        else:
            print(spec, tcp(int(port), mode == "tcp"))
    """
)


def client(specs: list[str], flags: list[str]):
    return run_bubble([SYSTEM_PYTHON, "-c", CLIENT, *specs], flags, timeout=90)


def test_only_the_scoped_endpoint_is_reached(listeners):
    ok, other = listeners(), listeners()
    r = client(
        [f"tcp:{ok.port}", f"nb:{ok.port}", f"tcp:{other.port}"],
        [f"--allow-connect=127.0.0.1:{ok.port}"],
    )
    lines = dict(line.split(" ", 1) for line in r.stdout.splitlines())
    assert lines[f"tcp:{ok.port}"] == "WORLD"
    assert lines[f"nb:{ok.port}"] == "WORLD"  # a non-blocking connect keeps its mode
    assert lines[f"tcp:{other.port}"] == "errno 1"
    assert other.close() == []
    assert ok.close() == [b"HELLO", b"HELLO"]
    allowed = [e for e in r.of_type("net.connect") if e.get("scope")]
    assert [e["scope"] for e in allowed] == [f"127.0.0.1:{ok.port}"] * 2
    assert [e["port"] for e in r.alerts if e.get("syscall") == "connect"] == [other.port]


def test_cidr_and_any_port_and_udp(listeners, tmp_path):
    tcp, udp = listeners(), listeners(socket.SOCK_DGRAM)
    policy = tmp_path / "p.toml"
    policy.write_text('[net]\nconnect = ["127.0.0.0/8:*"]\n')
    r = client([f"tcp:{tcp.port}", f"udp:{udp.port}"], ["--policy", str(policy)])
    assert f"tcp:{tcp.port} WORLD" in r.stdout
    assert f"udp:{udp.port} PONG" in r.stdout, r.stdout + r.stderr[-300:]
    assert udp.close() == [b"PING"]


def test_names_are_resolved_once_at_start(listeners):
    ok = listeners()
    r = client([f"tcp:{ok.port}"], [f"--allow-connect=localhost:{ok.port}"])
    assert f"tcp:{ok.port} WORLD" in r.stdout
    notes = [e["message"] for e in r.of_type("sandbox.msg")]
    assert any("localhost resolved to" in n and "127.0.0.1" in n for n in notes), notes


RACE = textwrap.dedent(
    """
    import ctypes, socket, struct, sys, threading
    libc = ctypes.CDLL(None, use_errno=True)
    good, bad = int(sys.argv[1]), int(sys.argv[2])
    def addr(port):
        return struct.pack("<HH4s8x", socket.AF_INET, socket.htons(port), socket.inet_aton("127.0.0.1"))
    buf = ctypes.create_string_buffer(addr(good), 16)
    stop = False
    def flip():
        while not stop:
            ctypes.memmove(buf, addr(bad), 16)
            ctypes.memmove(buf, addr(good), 16)
    t = threading.Thread(target=flip); t.start()
    ok = 0
    for _ in range(300):
        s = socket.socket()
        if libc.connect(s.fileno(), buf, 16) == 0:
            ok += 1
        s.close()
    stop = True; t.join()
    print("connected", ok)
    """
)


def test_a_thread_rewriting_the_address_reaches_nothing_else(listeners):
    ok, other = listeners(), listeners()
    r = run_bubble(
        [SYSTEM_PYTHON, "-c", RACE, str(ok.port), str(other.port)],
        [f"--allow-connect=127.0.0.1:{ok.port}"],
        timeout=120,
    )
    assert r.stdout.startswith("connected"), r.stderr[-400:]
    assert other.close() == []


def test_connect_scopes_need_the_network_denied():
    r = run_bubble(["/bin/true"], ["--deny-net=0", "--allow-connect=127.0.0.1:80"])
    assert r.rc == 125 and "connect scopes narrow a denied network" in r.stderr


@pytest.mark.skipif(not AS_ROOT, reason="runs bubble as nobody from root")
def test_connect_scope_as_a_non_root_operator(listeners):
    ok = listeners()
    proc = subprocess.run(
        nobody_cmd(
            [
                "run",
                f"--allow-connect=127.0.0.1:{ok.port}",
                "--",
                SYSTEM_PYTHON,
                "-c",
                CLIENT,
                f"tcp:{ok.port}",
            ]
        ),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert f"tcp:{ok.port} WORLD" in proc.stdout, proc.stderr[-500:]
    assert ok.close() == [b"HELLO"]
