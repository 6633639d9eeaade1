"""Issue "Hardening, round 2", finding 3: a launcher hands the target a socket of the host
as fd 0, outside the network wall. Under --deny-net=1 a datagram socket (UDP, AF_UNIX) or
any non-AF_UNIX socket is refused before the target runs; an AF_UNIX stream socket is handed
over, and an address in sendto/sendmsg/sendmmsg on it is denied and alerted, even when a
thread writes msg_name after the check. Checked from outside: the host listener gets
nothing."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from bubble.sandbox.selftest import target_python

# A target that sends one datagram from fd 0 in the way `how` says, to the address in argv.
SEND = r"""
import ctypes, errno, socket, struct, sys, threading
libc = ctypes.CDLL(None, use_errno=True)
how, dest = sys.argv[1], sys.argv[2]
s = socket.socket(fileno=0)
addr = (dest, int(sys.argv[3])) if s.family == socket.AF_INET else dest
def raw(a):
    if s.family == socket.AF_INET:
        return struct.pack("=H", 2) + struct.pack("!H", a[1]) + socket.inet_aton(a[0]) + bytes(8)
    return struct.pack("=H", 1) + a.encode() + b"\0"
def report(r):
    print("RESULT", "0" if r >= 0 else errno.errorcode[ctypes.get_errno()], flush=True)
if how == "sendto":
    name = ctypes.create_string_buffer(raw(addr))
    report(libc.sendto(0, b"escaped", 7, 0, name, len(name.raw) - 1))
elif how in ("sendmsg", "sendmmsg", "race"):
    name = ctypes.create_string_buffer(raw(addr))
    data = ctypes.create_string_buffer(b"escaped")
    iov = ctypes.create_string_buffer(struct.pack("QQ", ctypes.addressof(data), 7))
    hdr = ctypes.create_string_buffer(
        struct.pack("QI4xQQQQi4x", ctypes.addressof(name), len(name.raw) - 1,
                    ctypes.addressof(iov), 1, 0, 0, 0) + bytes(8))
    if how == "race":
        # msg_name NULL while the supervisor looks, the host address a moment later.
        with_name, without = hdr.raw[:56], bytes(56)
        stop = False
        def flip():
            i = 0
            while not stop:
                ctypes.memmove(hdr, (with_name, without)[i & 1], 56); i += 1
        t = threading.Thread(target=flip); t.start()
        sent = sum(libc.sendmsg(0, hdr, 0) >= 0 for _ in range(300))
        stop = True; t.join()
        print("RACED", sent, flush=True)
    elif how == "sendmsg":
        report(libc.sendmsg(0, hdr, 0))
    else:
        report(libc.sendmmsg(0, hdr, 1, 0))
print("ALIVE", flush=True)
"""


def _run(stdin: socket.socket, how: str, dest: str, port: int = 0):
    with tempfile.NamedTemporaryFile("r", suffix=".ndjson") as ev:
        cmd = [sys.executable, "-m", "bubble", "run", "--events", ev.name, "--"]
        cmd += [target_python(), "-I", "-c", SEND, how, dest, str(port)]
        proc = subprocess.run(
            cmd, stdin=stdin.fileno(), capture_output=True, text=True, timeout=120
        )
        text = Path(ev.name).read_text()
        events = [json.loads(line) for line in text.splitlines()]
    return proc, events


def _got_anything(sock: socket.socket) -> bool:
    sock.settimeout(0.3)
    try:
        sock.recv(64)
    except TimeoutError:
        return False
    return True


@pytest.mark.parametrize(
    "family,kind,name",
    [
        (socket.AF_INET, socket.SOCK_DGRAM, "AF_INET SOCK_DGRAM"),
        (socket.AF_INET, socket.SOCK_STREAM, "AF_INET SOCK_STREAM"),
        (socket.AF_UNIX, socket.SOCK_DGRAM, "AF_UNIX SOCK_DGRAM"),
    ],
    ids=["udp", "tcp", "unix-dgram"],
)
def test_host_socket_as_stdin_is_refused(family, kind, name, workdir):
    if family == socket.AF_INET:
        listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        listener.bind(("127.0.0.1", 0))
        dest, port = "127.0.0.1", listener.getsockname()[1]
    else:
        dest, port = str(workdir / "host.sock"), 0
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        listener.bind(dest)
        os.chmod(dest, 0o777)
    handed = socket.socket(family, kind)
    try:
        proc, events = _run(handed, "sendmsg", dest, port)
        assert not _got_anything(listener)
    finally:
        listener.close()
        handed.close()
    assert proc.returncode == 125, proc.stdout + proc.stderr
    assert f"fd 0 is a {name} socket from outside the network wall" in proc.stderr
    assert "RESULT" not in proc.stdout and events == []  # refused before anything ran


@pytest.mark.parametrize("how", ["sendto", "sendmsg", "sendmmsg", "race"])
def test_inherited_unix_stream_socket_cannot_address_the_host(how, workdir):
    """An AF_UNIX stream socket is handed over (its peer is fixed); an address in a send on
    it is denied and alerted, and a thread writing msg_name after the check reaches nothing."""
    path = str(workdir / "host.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(path)
    os.chmod(path, 0o777)
    ours, handed = socket.socketpair()
    try:
        proc, events = _run(handed, how, path)
        out = proc.stdout + proc.stderr
        assert "ALIVE" in out, out
        assert not _got_anything(listener), "a datagram reached a host socket"
    finally:
        listener.close()
        handed.close()
        ours.close()
    alerts = [e for e in events if e["type"] == "policy.alert"]
    if how == "race":
        assert "RACED" in out
        assert all(a["syscall"] == "sendmsg" and a["peer"] == path for a in alerts)
    else:
        assert "RESULT EPERM" in out
        [alert] = alerts
        assert (alert["syscall"], alert["peer"], alert["category"]) == (how, path, "net")
