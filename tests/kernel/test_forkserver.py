"""The fork server (`bubble forkserver`): a launcher it forks is as clean as a cold one --
the same descriptors, threads and signal state, a session of its own, the run's environment
only -- exits the same way, and a client that goes away takes its run with it."""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bubble.jobs.forkclient import ForkServer, Launched

SECRET = "SERVER_SECRET"


@pytest.fixture
def server() -> Iterator[ForkServer]:
    srv = ForkServer(sys.executable, {**os.environ, SECRET: "do-not-leak"})
    assert srv.wait_ready(60), "the fork server did not start"
    yield srv
    srv.close()


def _shape(pid: int) -> dict[str, object]:
    """What a launcher holds, with the numbers that differ between two runs taken out."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    fds = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        target = os.readlink(f"/proc/{pid}/fd/{name}")
        fds[int(name)] = re.sub(r"\[\d+\]|/(cold|fork)\.out$", "[N]", target)
    return {
        "threads": fields["Threads"].strip(),
        "signals": [fields[k].strip() for k in ("SigBlk", "SigIgn", "SigCgt")],
        "session_leader": os.getsid(pid) == pid,
        "fd_kinds": sorted(fds.values()),
    }


def _start(server: ForkServer | None, tmp: Path, tag: str) -> tuple[int, object, int]:
    """A launcher running `env; sleep`, events on a pipe: (pid, handle, events read end)."""
    ev_r, ev_w = os.pipe()
    out = os.open(tmp / f"{tag}.out", os.O_WRONLY | os.O_CREAT, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    args = ["--events-fd", str(ev_w), "--", "/bin/sh", "-c", "env; exec sleep 3"]
    env = {"PATH": "/usr/bin:/bin", "RUN_VAR": tag}
    try:
        if server is None:
            proc: object = subprocess.Popen(
                [sys.executable, "-m", "bubble", "run", *args],
                stdin=null,
                stdout=out,
                stderr=out,
                pass_fds=(ev_w,),
                cwd=tmp,
                env={**env, "PYTHONPATH": os.pathsep.join(sys.path)},
                start_new_session=True,
            )
            pid = proc.pid  # type: ignore[attr-defined]
        else:
            launched = server.spawn(args, env, str(tmp), [null, out, out, ev_w], [ev_w])
            assert launched is not None, "the fork server refused a run"
            proc, pid = launched, launched.pid
    finally:
        for fd in (ev_w, out, null):
            os.close(fd)
    with os.fdopen(os.dup(ev_r), "rb") as events:
        first = json.loads(events.readline())
    assert first["type"] == "process.spawn"
    return pid, proc, ev_r


def test_a_forked_launcher_is_as_clean_as_a_cold_one(server: ForkServer, tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o755)
    cold_pid, cold, cold_ev = _start(None, tmp_path, "cold")
    fork_pid, forked, fork_ev = _start(server, tmp_path, "fork")
    cold_shape, fork_shape = _shape(cold_pid), _shape(fork_pid)
    deadline = time.monotonic() + 30  # the targets printed their environment
    while time.monotonic() < deadline and not all(
        "RUN_VAR" in (tmp_path / f"{tag}.out").read_text() for tag in ("cold", "fork")
    ):
        time.sleep(0.05)
    os.kill(cold_pid, 15)
    os.kill(fork_pid, 15)
    statuses = (cold.wait(30), forked.wait(30))  # type: ignore[attr-defined]
    for fd in (cold_ev, fork_ev):
        os.close(fd)
    assert fork_shape == cold_shape
    assert fork_shape["session_leader"]
    # Forked from a single thread: no other thread's lock can have been held at the fork.
    server_status = Path(f"/proc/{server.pid}/status").read_text()
    assert "\nThreads:\t1\n" in server_status
    # The target saw the run's environment and nothing of the server's.
    env = (tmp_path / "fork.out").read_text()
    assert "RUN_VAR=fork" in env and SECRET not in env
    assert statuses[0] == statuses[1]


def test_the_exit_status_is_the_cold_one(server: ForkServer, tmp_path: Path) -> None:
    for script, want in (("exit 3", 3), ("kill -9 $$", 128 + 9), ("true", 0)):
        null = os.open(os.devnull, os.O_RDWR)
        try:
            args = ["--events", "/dev/null", "--", "/bin/sh", "-c", script]
            launched = server.spawn(args, {"PATH": "/bin"}, "/", [null, null, null], [])
        finally:
            os.close(null)
        assert launched is not None
        cold = subprocess.run([sys.executable, "-m", "bubble", "run", *args], capture_output=True)
        assert launched.wait(60) == cold.returncode == want


def _sleeper(server: ForkServer) -> tuple[Launched, int]:
    """A forked launcher running `sleep 60`, and the read end of its events."""
    null = os.open(os.devnull, os.O_RDWR)
    ev_r, ev_w = os.pipe()
    try:
        args = ["--events-fd", str(ev_w), "--", "/bin/sleep", "60"]
        launched = server.spawn(args, {"PATH": "/bin"}, "/", [null, null, null, ev_w], [ev_w])
    finally:
        os.close(null)
        os.close(ev_w)
    assert isinstance(launched, Launched)
    return launched, ev_r


def test_a_client_that_leaves_takes_its_run_with_it(server: ForkServer, tmp_path: Path) -> None:
    launched, ev_r = _sleeper(server)
    with os.fdopen(ev_r, "rb") as events:
        target = json.loads(events.readline())["pid"]
        launched.conn.close()  # as if the orchestrator died
        deadline = time.monotonic() + 20
        while Path(f"/proc/{target}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not Path(f"/proc/{target}").exists(), "the target outlived its client"
        # Its event pipe reaches EOF: the launcher and every holder of it are gone.
        assert select.select([events], [], [], 20)[0], "the launcher still holds its events"
        events.read()


def test_a_dead_fork_server_is_restarted_and_refuses_meanwhile(server: ForkServer) -> None:
    first = server.pid
    assert first is not None
    os.kill(first, 9)
    deadline = time.monotonic() + 10
    while server.alive:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert server.spawn(["--", "/bin/true"], {}, "/", [0, 1, 2], []) is None  # start cold
    assert server.wait_ready(60) and server.pid != first and server.starts == 2
    null = os.open(os.devnull, os.O_RDWR)
    try:
        args = ["--events", "/dev/null", "--", "/bin/true"]
        launched = server.spawn(args, {"PATH": "/bin"}, "/", [null, null, null], [])
    finally:
        os.close(null)
    assert launched is not None and launched.wait(60) == 0


def test_runs_in_flight_end_with_their_fork_server(server: ForkServer) -> None:
    launched, ev_r = _sleeper(server)
    with os.fdopen(ev_r, "rb") as events:
        target = json.loads(events.readline())["pid"]
        assert server.pid is not None
        os.kill(server.pid, 9)
        assert launched.wait(30) == -9  # the client reports the kill
        assert select.select([events], [], [], 20)[0], "the launcher still holds its events"
        events.read()
    deadline = time.monotonic() + 20
    while Path(f"/proc/{target}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{target}").exists(), "the target outlived its fork server"


def test_every_run_gets_its_own_fresh_wall(server: ForkServer, tmp_path: Path) -> None:
    """The fork server makes each run's network namespace ahead (netns.make_spare): still
    one new namespace per run, `lo` configured, and no descriptor of it left to the target.
    The runs overlap, so their namespaces are alive together and their inodes must differ."""
    host = os.stat("/proc/self/ns/net").st_ino
    script = (
        "stat -L -c ns=%i /proc/self/ns/net; cat /proc/self/net/if_inet6;"
        " for f in /proc/$$/fd/*; do echo fd=$(readlink $f); done; exec sleep 2"
    )
    runs = []
    for i in range(3):
        time.sleep(0.3)  # idle: the server has made the next run's namespace
        out = os.open(tmp_path / f"{i}.out", os.O_WRONLY | os.O_CREAT, 0o644)
        null = os.open(os.devnull, os.O_RDWR)
        try:
            args = ["--events", "/dev/null", "--", "/bin/sh", "-c", script]
            runs.append(server.spawn(args, {"PATH": "/usr/bin:/bin"}, "/", [null, out, out], []))
        finally:
            os.close(out)
            os.close(null)
    assert all(run is not None and run.wait(60) == 0 for run in runs)
    seen = []
    for i in range(3):
        text = (tmp_path / f"{i}.out").read_text()
        inode = int(re.search(r"ns=(\d+)", text).group(1))  # type: ignore[union-attr]
        assert inode != host
        assert re.search(r"^0+1 01 80 10 80\s+lo$", text, re.M), f"lo is not up: {text}"
        assert "net:[" not in text, f"the target holds a namespace descriptor: {text}"
        seen.append(inode)
    assert len(set(seen)) == len(seen), "two runs shared a namespace"
