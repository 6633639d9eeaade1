"""A `bubble serve` of our own on a free loopback port, stopped (by its pid) when done."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType

import requests
from common import BUBBLE, BenchError

START_TIMEOUT = 30.0


class Server:
    def __init__(
        self, data_dir: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = ()
    ) -> None:
        self.data_dir = data_dir
        self.args = args
        self.env = {**os.environ, **(env or {})}
        self.db = data_dir / "bubble.db"
        self.log = open(data_dir / "server.log", "w+b")  # noqa: SIM115 (closed in __exit__)
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.session = requests.Session()
        # Loopback only: never let a proxy from the environment see these requests.
        self.session.trust_env = False

    def __enter__(self) -> Server:
        # --port 0: the kernel picks a free port and the server prints the URL it serves.
        cmd = [BUBBLE, "serve", "--host", "127.0.0.1", "--port", "0"]
        cmd += ["--data-dir", str(self.data_dir), "--max-timeout", "600", *self.args]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL, env=self.env
        )
        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + START_TIMEOUT
        line = b""
        while b"\n" not in line and time.monotonic() < deadline:
            if sel.select(deadline - time.monotonic()):
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                line += chunk
        match = re.search(rb"http://127\.0\.0\.1:(\d+)/", line)
        if not match:
            self._stop()
            raise BenchError(f"bubble serve did not start: {line!r} {self._log_tail()}")
        self.url = f"http://127.0.0.1:{int(match.group(1))}"
        health = self.session.get(f"{self.url}/api/health", timeout=10)
        if not health.ok:
            self._stop()
            raise BenchError(f"bubble serve unhealthy: {health.status_code} {health.text[:200]}")
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self._stop()

    def _stop(self) -> None:
        self.session.close()
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # the server shuts its runs down itself
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()
        self.log.close()

    def _log_tail(self) -> str:
        self.log.flush()
        return (self.data_dir / "server.log").read_bytes()[-800:].decode(errors="replace")

    def cpu_seconds(self) -> float:
        """CPU time (user + sys, all threads) of the server process itself, not of the
        launchers it starts: what ingesting, storing and streaming events costs it."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def post_run(self, cmd: list[str], timeout: float) -> str:
        resp = self.session.post(
            f"{self.url}/api/runs", json={"cmd": cmd, "timeout": timeout}, timeout=30
        )
        if resp.status_code != 202:
            raise BenchError(f"POST /api/runs: {resp.status_code} {resp.text[:300]}")
        run_id: str = resp.json()["id"]
        return run_id
