"""Clients that open streams and never read must cost the server a bounded amount
(issue 13, finding 8): 74 silent SSE clients on a 100k-event run, against a server with
16 threads, while `/` and `/api/health` keep answering and memory stays bounded."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
import requests

from bubble.web import shutdown
from bubble.web.httpd import stream_cap
from tests.web.helpers import ServeProcess, make_app, synthetic_run

THREADS = 16
WRITE_TIMEOUT = 3


def _silent(port: int, path: str, source: str) -> socket.socket:
    """Connect from `source`, ask for `path` as SSE, and never read a byte."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a closed window soon
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n"
    sock.sendall(request.encode())
    return sock


def _status(sock: socket.socket) -> int:
    """The response status, peeked: nothing is consumed, the receive window stays shut."""
    sock.settimeout(30)
    head = b""
    while b"\r\n" not in head:
        head = sock.recv(64, socket.MSG_PEEK)
    return int(head.split()[1])


def _drain(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection (30 s at most)."""
    data = bytearray()
    sock.settimeout(30)
    try:
        while chunk := sock.recv(1 << 20):
            data += chunk
    except ConnectionResetError:
        pass
    sock.close()
    return bytes(data)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _answers(base: str) -> None:
    for path in ("/api/health", "/"):
        resp = requests.get(base + path, timeout=20)
        assert resp.status_code == 200, (path, resp.status_code)


@pytest.mark.xfail(
    reason="open: on a quiet machine some silent clients receive the whole stream (it fails on "
    "the branch that added it too, which passed at load 20-40): the run may fit in loopback "
    "socket buffers, leaving nothing pending to time out; the caps, the RSS bound and the "
    "answering server hold",
    strict=False,
)
def test_silent_stream_clients_cannot_starve_the_server(data_dir: Path) -> None:
    app = make_app(data_dir)
    run_id = synthetic_run(app, 100_000)  # about 22 MB of SSE
    shutdown(app)
    server = ServeProcess(
        data_dir, "--threads", str(THREADS), "--write-timeout", str(WRITE_TIMEOUT)
    )
    port = int(server.url.rsplit(":", 1)[1])
    path = f"/api/runs/{run_id}/events"
    socks: list[socket.socket] = []
    try:
        _answers(server.url)
        before = _rss_mb(server.proc.pid)
        # One client with 10 streams: 8 are served, 2 refused (per-client cap).
        same = [_silent(port, path, "127.0.0.66") for _ in range(10)]
        socks += same
        assert sorted(_status(s) for s in same) == [200] * 8 + [429] * 2
        # 64 more clients, one stream each: the rest of the stream slots, then 503.
        many = [_silent(port, path, f"127.0.0.{2 + i}") for i in range(64)]
        socks += many
        cap = stream_cap(THREADS)
        statuses = [_status(s) for s in many]
        assert statuses.count(200) == cap - 8 and statuses.count(503) == 64 - (cap - 8)
        # Every stream slot is taken by a client that reads nothing; the rest still works.
        for _ in range(3):
            _answers(server.url)
            time.sleep(0.5)
        grown = _rss_mb(server.proc.pid) - before
        print(f"server RSS grew {grown:.0f} MB with {len(socks)} silent clients")
        assert grown < 120, grown  # unbounded: 126 -> 466 MB (issue 13)
        # After the write timeout the server has dropped them: each stream ends cut short.
        time.sleep(WRITE_TIMEOUT + 2)
        bodies = [_drain(s) for s in socks]
        served = [b for b in bodies if b.startswith(b"HTTP/1.1 200")]
        assert len(served) == cap
        assert all(b"event: end" not in b for b in served)
        refused = [b for b in bodies if not b.startswith(b"HTTP/1.1 200")]
        assert all(
            set(json.loads(b.split(b"\r\n\r\n", 1)[1])) == {"error", "hint"} for b in refused
        )
        # Their slots are free again: a reading client gets the whole stream.
        with requests.get(server.url + path, stream=True, timeout=60) as resp:
            assert resp.status_code == 200
            assert b"event: end" in b"".join(resp.iter_content(1 << 20))
        _answers(server.url)
    finally:
        for s in socks:
            s.close()
        server.stop()
