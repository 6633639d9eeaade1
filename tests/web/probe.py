"""The least-privilege loop's test bench, shared by the API and browser tests: a probe that
writes into a directory and connects to a loopback port, the directory it runs from, and a
listener recording what arrives (fixtures `box` and `listener`)."""

from __future__ import annotations

import secrets
import shutil
import socket
import string
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

PROBE = """\
import socket, sys
out, port = sys.argv[1], int(sys.argv[2])
try:
    with open(out + "/made.txt", "w") as fh:
        fh.write("made\\n")
    print("write: allowed", flush=True)
except OSError as e:
    print("write: errno", e.errno, flush=True)
try:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"ping")
    s.close()
    print("connect: allowed", flush=True)
except OSError as e:
    print("connect: errno", e.errno, flush=True)
"""


class Listener:
    """A loopback TCP listener recording what each connection sent."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.got: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                data = b""
                try:
                    while chunk := conn.recv(1024):
                        data += chunk
                except OSError:
                    pass
                self.got.append(data)

    def close(self) -> None:
        self.sock.close()


def probe_box() -> Path:
    """A directory the target (nobody, when the tests run as root) can read, with an `out`
    folder it may write into when a scope allows it, and `probe.py` (PROBE) in it. Its name
    has no digits, which `bubble diff` reads as a pattern (`#`): places show as they are."""
    while True:
        name = "bubble-lp-" + "".join(secrets.choice(string.ascii_lowercase) for _ in range(10))
        root = Path(tempfile.gettempdir()) / name
        try:
            root.mkdir(mode=0o755)
            break
        except FileExistsError:
            continue
    root.chmod(0o755)
    (root / "out").mkdir()
    (root / "out").chmod(0o777)
    (root / "probe.py").write_text(PROBE)
    (root / "probe.py").chmod(0o644)
    return root


@pytest.fixture
def listener() -> Iterator[Listener]:
    lis = Listener()
    yield lis
    lis.close()


@pytest.fixture
def box() -> Iterator[Path]:
    root = probe_box()
    yield root
    shutil.rmtree(root)
