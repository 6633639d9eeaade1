"""Hostile clients against the simulated internet: slow senders, silent connections held
open, garbage that looks like TLS, oversized payloads, 10,000 connections. The server stays
bounded (bytes, open connections, time), keeps serving, stops when told and leaves nothing."""

from __future__ import annotations

import os

import pytest

from tests.netsim.conftest import run_sim

BOUNDS = ("--idle", "1", "--lifetime", "2", "--connections", "64")


def leftover_servers() -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if b"bubble.netsim" in fh.read():
                    found.append(pid)
        except OSError:
            continue
    return found


def python(code: str) -> str:
    return f"python3 - <<'PYEOF'\n{code}\nPYEOF\n"


def test_slowloris_half_open_flood_and_oversized_payload_are_bounded(tmp_path, host):
    script = python("""
import socket, time, subprocess
slow = [socket.create_connection(('198.51.100.1', 80)) for _ in range(10)]
silent = []
for _ in range(300):  # far past the cap of 64 open connections
    silent.append(socket.create_connection(('198.51.100.2', 8443)))
for _ in range(12):  # a byte every 0.3 s: never idle, but past the lifetime
    for s in slow:
        try: s.send(b'G')
        except OSError: pass
    time.sleep(0.3)
big = socket.create_connection(('198.51.100.3', 9000))
try:
    big.sendall(b'A' * (1 << 20))
except OSError:
    pass
time.sleep(1.5)  # every silent connection has gone idle by now
print(subprocess.run(['curl', '-s', 'http://after.example/still-there'], capture_output=True, text=True).stdout)
""")
    sim = run_sim(tmp_path, script, 60, *BOUNDS)
    assert sim.doc["stdout"].startswith("bubble net-sim")
    slow = sim.of("net.capture", peer="198.51.100.1")
    assert len(slow) == 10 and {c["ended"] for c in slow} == {"lifetime"}
    silent = sim.of("net.capture", peer="198.51.100.2")
    assert silent and len(silent) <= 300 and {c["ended"] for c in silent} <= {"idle", "run-end"}
    [note] = sim.of("sandbox.msg")
    assert "accepting paused" in note["message"] and "cap of 64" in note["message"]
    [big] = sim.of("net.capture", peer="198.51.100.3")
    assert big["bytes"] == 64 * 1024 and big["truncated"] and big["ended"] == "limit"
    assert (sim.captures / big["artifact"]).stat().st_size == 64 * 1024
    assert sim.of("net.capture", http_host="after.example")
    assert sim.doc["server_rc"] == 0 and not leftover_servers()
    assert not host.saw_anything()


def test_garbage_tls_does_not_break_the_server(tmp_path, host):
    script = (
        python("""
import os, socket
junk = [b'\\x16\\x03\\x01\\xff\\xff' + os.urandom(3000), b'\\x16\\x03\\x03\\x00\\x05hello',
        b'\\x16\\x03', b'\\x16\\x03\\x01\\x00\\x30' + b'\\x01' + b'\\xff' * 47, os.urandom(512)]
for i, data in enumerate(junk):
    s = socket.create_connection(('203.0.113.50', 443 + i))
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    s.settimeout(3)
    try:
        while s.recv(4096): pass
    except OSError: pass
    s.close()
""")
        + "curl -sk https://after-junk.example/ok"
    )
    sim = run_sim(tmp_path, script, 60, *BOUNDS)
    assert sim.doc["stdout"].startswith("bubble net-sim")
    junk = sim.of("net.capture", peer="203.0.113.50")
    assert len(junk) == 5 and all("tls_sni" not in c and "http_request" not in c for c in junk)
    assert sim.of("net.capture", tls_sni="after-junk.example", http_path="/ok")
    assert sim.doc["server_rc"] == 0 and not leftover_servers()


@pytest.mark.timeout(300)
def test_ten_thousand_connections_are_each_recorded(tmp_path, host):
    script = python("""
import socket
done = 0
for batch in range(20):
    socks = []
    for i in range(500):
        s = socket.create_connection(('192.0.2.%d' % (1 + batch), 1000 + i))
        s.sendall(b'%d' % (batch * 500 + i))
        socks.append(s)
    for s in socks:
        s.close()
        done += 1
print(done)
""")
    sim = run_sim(tmp_path, script, 240, "--connections", "1024")
    assert sim.doc["stdout"].strip() == "10000"
    caps = sim.of("net.capture", proto="tcp")
    assert len(caps) == 10_000
    assert {c["text"] for c in caps} == {str(i) for i in range(10_000)}
    assert sim.doc["server_rc"] == 0 and not leftover_servers()
    assert not host.saw_anything()
