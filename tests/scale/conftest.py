"""Fixtures for scale-out: `bubble serve` queueing to Redis and `bubble worker` processes
over the session's private Redis and PostgreSQL servers, each stopped by its PID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.servers import PostgresServer, RedisServer
from tests.web.conftest import engine  # noqa: F401  (the fixture, for these tests too)
from tests.web.helpers import ROOT, ServeProcess

# Fast enough to test the dead-worker path in seconds; the defaults are 2 s and 20 s.
FAST = {"BUBBLE_HEARTBEAT": "0.5", "BUBBLE_STALE_AFTER": "4"}


class WorkerProcess:
    """`python -m bubble worker ...`; ready once it printed its first line."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bubble", "worker", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **FAST, **(env or {})},
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        self.line = self.proc.stdout.readline()
        if "ready" not in self.line:
            self.stop()
            assert self.proc.stderr is not None
            raise RuntimeError(f"worker did not start: {self.line!r} {self.proc.stderr.read()!r}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()
        return self.proc.returncode


@pytest.fixture
def urls(postgres: PostgresServer, redis_server: RedisServer) -> tuple[str, str]:
    """(queue URL, store URL): a fresh Redis database and a fresh migrated PostgreSQL one."""
    return redis_server.fresh_url(), postgres.fresh_url()


@pytest.fixture
def cluster(
    tmp_path: Path, urls: tuple[str, str]
) -> Iterator[tuple[ServeProcess, Callable[..., WorkerProcess]]]:
    """A queueing `bubble serve` and a factory of workers on the same queue and store."""
    queue_url, db_url = urls
    common = ["--queue-url", queue_url, "--db-url", db_url]
    server = ServeProcess(tmp_path / "web", *common, env=FAST)
    workers: list[WorkerProcess] = []

    def start(name: str, *extra: str) -> WorkerProcess:
        data = tmp_path / f"worker-{name}"
        worker = WorkerProcess(*common, "--name", name, "--data-dir", str(data), *extra)
        workers.append(worker)
        return worker

    try:
        yield server, start
    finally:
        for worker in workers:
            worker.stop()
        server.stop()
