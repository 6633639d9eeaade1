"""Connect scopes together with `--net-sim` (issue 11 item 2): an endpoint a scope allows is
reached on the host (the supervisor connects or sends from the host's network), everything
else reaches the simulated internet inside the wall and is recorded as `net.capture`; the
host's listeners on other ports get nothing. Every connect or addressed send on a socket of
the wall is made by the supervisor on its own copy of that socket (never CONTINUEd: a host
socket the scope installed could be dup2'ed onto the descriptor meanwhile)."""

from __future__ import annotations

import os
import textwrap

from tests.conftest import run_bubble
from tests.kernel.conftest import SYSTEM_PYTHON
from tests.kernel.test_connect_scopes import Listener
from tests.kernel.test_udp_scope import Udp

HOST_NETNS = os.stat("/proc/self/ns/net").st_ino

CLIENT = textwrap.dedent(
    """
    import os, select, socket, sys
    host_ns, ok, other, uok, uother = (int(a) for a in sys.argv[1:6])
    assert os.stat("/proc/self/ns/net").st_ino != host_ns, "HOST-NAMESPACE"

    def talk(s, data):
        s.sendall(data)
        s.settimeout(5)
        return s.recv(100)[:12]

    def step(name, fn):
        try:
            print(name, fn(), flush=True)
        except OSError as e:
            print(name, f"errno {e.errno}", flush=True)

    def tcp(port, blocking=True):
        s = socket.socket()
        if blocking:
            s.connect(("127.0.0.1", port))
        else:
            s.setblocking(False)
            rc = s.connect_ex(("127.0.0.1", port))
            select.select([], [s], [], 5)
            s.setblocking(True)
            assert rc == 115 and not s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR), rc
        return talk(s, b"GET / HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n")

    def udp(port):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.sendto(b"KNOCK", ("127.0.0.1", port))
        u.settimeout(3)
        try:
            return u.recv(100)
        except TimeoutError:
            return "no reply"

    step("scoped", lambda: tcp(ok))
    step("scoped_nb", lambda: tcp(ok, False))
    step("sim", lambda: tcp(other))
    step("sim_nb", lambda: tcp(other, False))
    step("udp_scoped", lambda: udp(uok))
    step("udp_sim", lambda: udp(uother))
    addr = socket.getaddrinfo("stage2.example", 80, socket.AF_INET, socket.SOCK_STREAM)[0][4]
    step("named", lambda: addr[0] + " " + str(talk(socket.create_connection(addr), b"GET /n HTTP/1.0\\r\\n\\r\\n")))
    """
)


def test_scoped_endpoints_reach_the_host_and_the_rest_the_simulated_internet():
    ok, other = Listener(), Listener()
    uok, uother = Udp(), Udp()
    try:
        r = run_bubble(
            [SYSTEM_PYTHON, "-c", CLIENT, str(HOST_NETNS)]
            + [str(p) for p in (ok.port, other.port, uok.port, uother.port)],
            [
                "--net-sim",
                f"--allow-connect=127.0.0.1:{ok.port}",
                f"--allow-connect=127.0.0.1:{uok.port}",
            ],
            timeout=120,
        )
    finally:
        got_ok, got_other = ok.close(), other.close()
        got_uok, got_uother = uok.close(), uother.close()
    out = dict(line.split(" ", 1) for line in r.stdout.splitlines() if " " in line)
    assert out["scoped"] == "b'WORLD'", r.stdout + r.stderr[-600:]
    assert out["scoped_nb"] == "b'WORLD'"
    assert out["sim"] == out["sim_nb"] == "b'HTTP/1.1 200'"  # the sinkhole answered
    assert out["udp_scoped"] == "b'PONG'"
    assert out["named"].startswith("198.18.") and "HTTP/1.1 200" in out["named"]
    # What reached the host: exactly the scoped endpoints' traffic.
    assert len(got_ok) == 2 and all(d.startswith(b"GET / HTTP/1.0") for d in got_ok)
    assert got_uok == [b"KNOCK"]
    assert got_other == [] and got_uother == []
    # What the simulated internet recorded: the rest.
    caps = [e for e in r.of_type("net.capture")]
    assert {(c["port"], c["proto"]) for c in caps if c["peer"] == "127.0.0.1"} == {
        (other.port, "tcp"), (uother.port, "udp"),
    }, caps  # fmt: skip
    assert not [c for c in caps if c["port"] in (ok.port, uok.port)]
    assert any(c.get("http_request") == "GET /n HTTP/1.0" for c in caps)
    connects = {
        e["port"]: e for e in r.of_type("net.connect") if e.get("port") in (ok.port, other.port)
    }
    assert connects[ok.port]["scope"] == f"127.0.0.1:{ok.port}"
    assert "inside the wall" in connects[other.port]["detail"]
    assert not r.alerts, r.alerts


SWAP = textwrap.dedent(
    """
    import ctypes, os, socket, struct, sys, threading
    libc = ctypes.CDLL(None, use_errno=True)
    host_ns, uok, uother = (int(a) for a in sys.argv[1:4])
    assert os.stat("/proc/self/ns/net").st_ino != host_ns, "HOST-NAMESPACE"
    host = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    host.sendto(b"HELLO", ("127.0.0.1", uok))  # the supervisor puts a host socket here
    walled = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    victim = os.dup(walled.fileno())
    addr = struct.pack("<HH4s8x", socket.AF_INET, socket.htons(uother), socket.inet_aton("127.0.0.1"))
    stop = False
    def flip():
        while not stop:
            os.dup2(host.fileno(), victim)
            os.dup2(walled.fileno(), victim)
    t = threading.Thread(target=flip); t.start()
    for i in range(500):
        libc.connect(victim, addr, 16)  # on the descriptor number the other thread swaps
        libc.send(victim, b"ESCAPE", 6, 0)
        libc.sendto(victim, b"ESCAPE", 6, 0, addr, 16)
    stop = True; t.join()
    print("done")
    """
)


def test_a_host_socket_dup2ed_onto_a_walled_descriptor_reaches_nothing_else():
    """The attack the old refusal guarded against: a thread swaps a host socket the scope
    installed onto a descriptor of the wall while another connects or sends it elsewhere.
    The supervisor connects and sends on the socket it checked, so nothing reaches the host
    but the scoped endpoint."""
    uok, uother = Udp(), Udp()
    try:
        r = run_bubble(
            [SYSTEM_PYTHON, "-c", SWAP, str(HOST_NETNS), str(uok.port), str(uother.port)],
            ["--net-sim", f"--allow-connect=127.0.0.1:{uok.port}"],
            timeout=180,
        )
    finally:
        got_ok, got_other = uok.close(), uother.close()
    assert r.stdout.strip() == "done", r.stdout + r.stderr[-600:]
    assert got_ok == [b"HELLO"]
    assert got_other == []
    assert [c for c in r.of_type("net.capture") if c["port"] == uother.port]  # the sim got them
