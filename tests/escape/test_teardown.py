"""Teardown: no task of a run outlives it, whatever its state or session.

The red team's probe (issue 13, finding 1): a process that calls setsid, starts a thread and
ends its *main thread* with SYS_exit. Its leader then shows `Z` in /proc/PID/stat while the
other thread runs on (KERNEL-NOTES trap 17); a teardown that skips "zombies" or relies on the
process group misses it. Checked from outside: no process carrying the run's marker is left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import run_bubble

# Forks a child that leaves the session, starts a spinning thread and ends its main thread;
# the parent then sleeps (or exits at once with "exit" as argv[2]).
HIDER = r"""
import ctypes, os, sys, threading, time
libc = ctypes.CDLL(None, use_errno=True)
if os.fork() == 0:
    os.setsid()
    threading.Thread(target=lambda: [time.sleep(0.05) for _ in iter(int, 1)]).start()
    time.sleep(0.2)
    libc.syscall(60, 0)  # SYS_exit: only the main thread (the leader) ends
print("HIDDEN", flush=True)
if sys.argv[2] != "exit":
    time.sleep(600)
"""


def _marked(marker: str) -> list[int]:
    """Live processes whose command line carries `marker` (a leader in Z with live threads
    counts: its /proc/PID/task still lists them)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
            tasks = os.listdir(f"/proc/{name}/task")
        except OSError:
            continue
        if marker.encode() not in cmdline:
            continue
        for task in tasks:
            try:
                stat = Path(f"/proc/{name}/task/{task}/stat").read_bytes()
            except OSError:
                continue
            if stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] not in (b"Z", b"X"):
                found.append(int(name))
                break
    return found


def _gone(marker: str, seconds: float = 5) -> bool:
    deadline = time.monotonic() + seconds
    while _marked(marker):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def marker():
    mark = f"bubble-hider-{uuid.uuid4().hex}"
    yield mark
    for pid in _marked(mark):  # never leave the probe behind, whatever the outcome
        os.kill(pid, signal.SIGKILL)


def _cmd(marker: str, flags: list[str], events: Path, mode: str = "sleep") -> list[str]:
    return [
        sys.executable, "-m", "bubble", "run", "--events", str(events), *flags, "--",
        "/usr/bin/python3", "-c", HIDER, marker, mode,
    ]  # fmt: skip


def test_timeout_ends_a_zombie_leader_with_live_threads(marker):
    started = time.monotonic()
    res = run_bubble(["/usr/bin/python3", "-c", HIDER, marker, "exit"], ["--timeout", "3"], 30)
    took = time.monotonic() - started
    assert "HIDDEN" in res.stdout
    assert _gone(marker, 1), f"processes outlived the run: {_marked(marker)}"
    assert res.exit["timed_out"] is True
    assert took < 10, f"--timeout 3 took {took:.1f} s"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_signal_to_bubble_ends_the_hidden_process(marker, tmp_path, sig):
    events = tmp_path / "events.ndjson"
    proc = subprocess.Popen(
        _cmd(marker, [], events), stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert proc.stdout.readline() == "HIDDEN\n"
        deadline = time.monotonic() + 10
        while len(_marked(marker)) < 2:  # the sleeper and the hider with its thread
            assert time.monotonic() < deadline, "the probe never set itself up"
            time.sleep(0.05)
        time.sleep(0.3)  # the hider's leader has called SYS_exit
        proc.send_signal(sig)
        proc.wait(timeout=15)
        assert _gone(marker), f"processes outlived bubble ({sig.name}): {_marked(marker)}"
        if sig == signal.SIGTERM:
            last = events.read_text().splitlines()[-1]
            assert '"type":"process.exit"' in last
    finally:
        proc.kill()
        proc.wait()
