"""Run the simulated internet and real clients inside a network namespace the test makes
(`unshare -rn`: a user namespace too, so this works without root), with listeners on the
host's loopback that must see nothing. The driver refuses to start if its namespace is the
host's, so no client here can resolve or reach anything outside."""

from __future__ import annotations

import json
import os
import select
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

DRIVER = Path(__file__).with_name("driver.py")
SRC = Path(__file__).resolve().parents[2] / "src"

if shutil.which("unshare") is None or shutil.which("nft") is None:
    pytest.skip("needs unshare (util-linux) and nft (nftables)", allow_module_level=True)


def host_netns() -> str:
    return str(os.stat("/proc/self/ns/net").st_ino)


@dataclass
class SimResult:
    doc: dict
    captures: Path

    @property
    def records(self) -> list[dict]:
        return self.doc["records"]

    def of(self, kind: str, **match: object) -> list[dict]:
        return [
            r
            for r in self.records
            if r["type"] == kind and all(r.get(k) == v for k, v in match.items())
        ]


def run_sim(tmp_path: Path, script: str, timeout: float = 60, *extra: str) -> SimResult:
    captures = tmp_path / "captures"
    captures.mkdir(exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(SRC))
    done = subprocess.run(
        [
            "unshare",
            "-rn",
            sys.executable,
            str(DRIVER),
            host_netns(),
            str(captures),
            str(timeout),
            script,
            *extra,
        ],
        capture_output=True,
        timeout=timeout + 60,
        env=env,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    doc = json.loads(done.stdout)
    assert doc["ready"] == "ready", doc
    assert doc["netns"] != host_netns()
    return SimResult(doc, captures)


class HostListeners:
    """TCP and UDP sockets on the host's 127.0.0.1 and ::1: whatever reaches them left the
    namespace."""

    def __init__(self) -> None:
        self.socks: list[socket.socket] = []
        tcp4 = socket.create_server(("127.0.0.1", 0))
        self.port = tcp4.getsockname()[1]
        self.socks.append(tcp4)
        for family, host, kind in (
            (socket.AF_INET6, "::1", socket.SOCK_STREAM),
            (socket.AF_INET, "127.0.0.1", socket.SOCK_DGRAM),
            (socket.AF_INET6, "::1", socket.SOCK_DGRAM),
        ):
            s = socket.socket(family, kind)
            s.bind((host, self.port))
            if kind == socket.SOCK_STREAM:
                s.listen()
            self.socks.append(s)

    def saw_anything(self) -> bool:
        readable, _, _ = select.select(self.socks, [], [], 0.2)
        return bool(readable)

    def close(self) -> None:
        for s in self.socks:
            s.close()


@pytest.fixture
def host() -> Iterator[HostListeners]:
    listeners = HostListeners()
    yield listeners
    listeners.close()
