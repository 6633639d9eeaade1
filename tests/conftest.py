"""Shared fixtures: the probe program, a runner for `bubble run`, and a work directory the
target's user can use (when tests run as root, targets run as `nobody`)."""

from __future__ import annotations

import atexit
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.servers import PostgresServer, RedisServer
from tests.unit.test_events_doc import assert_documented

# Property tests check behaviour, not speed: no per-example deadline (a loaded CI machine
# made single examples take seconds), and no "too slow" health check for the same reason.
settings.register_profile("bubble", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("bubble")

ROOT = Path(__file__).resolve().parent.parent
PROBE_SRC = ROOT / "tests" / "probes" / "probe.c"
NOBODY = pwd.getpwnam("nobody")
AS_ROOT = os.geteuid() == 0


def target_ids() -> tuple[int, int]:
    """uid/gid the target runs as under default flags."""
    return (NOBODY.pw_uid, NOBODY.pw_gid) if AS_ROOT else (os.getuid(), os.getgid())


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str
    events: list[dict] = field(default_factory=list)

    def of_type(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["type"] == kind]

    @property
    def alerts(self) -> list[dict]:
        return self.of_type("policy.alert")

    @property
    def exit(self) -> dict:
        assert self.events and self.events[-1]["type"] == "process.exit", self.events[-3:]
        return self.events[-1]


FORKSERVER = os.environ.get("BUBBLE_TEST_FORKSERVER") == "1"
_FORKSERVERS: list = []


def _forkserver() -> str:
    """The socket of this session's fork server, started on first use."""
    from bubble.jobs.forkclient import ForkServer

    if not _FORKSERVERS:
        server = ForkServer(sys.executable, dict(os.environ))
        assert server.wait_ready(60), "the fork server did not start"
        atexit.register(server.close)
        _FORKSERVERS.append(server)
    return _FORKSERVERS[0].path


def run_bubble(
    argv: list[str],
    flags: list[str] = (),
    timeout: float = 60,
    input: str | None = None,
    cwd: str | None = None,
    env: dict | None = None,
) -> Result:
    """`bubble run FLAGS -- ARGV`, events to a private file; parses every event line."""
    with tempfile.NamedTemporaryFile("r", suffix=".ndjson") as ev:
        cmd = [sys.executable, "-m", "bubble", "run", "--events", ev.name, *flags, "--", *argv]
        if FORKSERVER:  # the same run, forked by a fork server (BUBBLE_TEST_FORKSERVER=1)
            cmd = [sys.executable, "-m", "bubble.jobs.forkclient", _forkserver(), "--", *cmd[4:]]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, input=input, cwd=cwd, env=env
        )
        events = [json.loads(line) for line in Path(ev.name).read_text().splitlines()]
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1)), "seq must be contiguous from 1"
    for event in events:
        assert_documented(event)  # every field a real run emits is in docs/events.md
    return Result(proc.returncode, proc.stdout, proc.stderr, events)


@pytest.fixture(scope="session")
def probe(tmp_path_factory) -> str:
    """Path of the probe program, built once per session with gcc into a directory every
    user can reach (targets run as `nobody`, and the checkout may live under /root)."""
    if shutil.which("gcc") is None:
        pytest.fail("gcc is missing: `make test` installs it (apt-get install gcc libc6-dev)")
    out = Path(tempfile.mkdtemp(prefix="bubble-probe-", dir="/tmp"))
    os.chmod(out, 0o755)
    binary = out / "probe"
    subprocess.run(
        ["gcc", "-O1", "-Wall", "-o", str(binary), str(PROBE_SRC), "-lpthread"], check=True
    )
    yield str(binary)
    shutil.rmtree(out, ignore_errors=True)


@pytest.fixture
def reachable_box() -> Iterator[Path]:
    """A directory every user can write, on a path every user can walk (tmp_path's parents
    are 0700): the supervisor carries an allowed write out as the target, which may run as
    nobody, path walk included."""
    path = Path(tempfile.mkdtemp(prefix="bubble-box-", dir="/tmp"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def nobody_src() -> Iterator[str]:
    """A copy of src/ that `nobody` can read, for running Bubble itself as an unprivileged
    user (the checkout may sit in a directory only root can enter)."""
    out = Path(tempfile.mkdtemp(prefix="bubble-src-", dir="/tmp"))
    shutil.copytree(
        ROOT / "src" / "bubble", out / "bubble", ignore=shutil.ignore_patterns("__pycache__")
    )
    # Bubble's one pure-Python dependency of the launcher (DNS decoding), for the system
    # interpreter the unprivileged launcher runs with.
    import dnslib

    shutil.copytree(
        Path(dnslib.__file__).parent, out / "dnslib", ignore=shutil.ignore_patterns("__pycache__")
    )
    for path in [out, *out.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    yield str(out)
    shutil.rmtree(out, ignore_errors=True)


@pytest.fixture
def workdir() -> Iterator[Path]:
    """An empty directory the target's user owns and can write when writes are allowed."""
    path = Path(tempfile.mkdtemp(prefix="bubble-test-", dir="/tmp"))
    os.chmod(path, 0o777)
    if AS_ROOT:
        os.chown(path, *target_ids())
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def give(path: Path) -> Path:
    """Hand `path` to the target's user (so allowed operations can succeed)."""
    if AS_ROOT:
        os.lchown(path, *target_ids())
    return path


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One private redis-server for the session (stopped by PID at the end)."""
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One private PostgreSQL cluster for the session (stopped by PID at the end)."""
    server = PostgresServer()
    yield server
    server.stop()
