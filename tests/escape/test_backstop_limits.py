"""The Landlock backstop on its own, and the limits that end hostile runs.

The backstop tests remove seccomp rows with the operator-side test hook BUBBLE_TEST_OMIT_ROWS:
what is left to stop the write or the connect is Landlock alone. The limit tests run a fork
bomb, a memory hog, an endless loop and an output flood: each must end within its limit, say
which limit in process.exit, and leave no process behind.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from bubble.sandbox import landlock
from bubble.sandbox.selftest import target_python
from tests.conftest import run_bubble

PY = target_python()
needs_landlock = pytest.mark.skipif(landlock.abi_version() < 4, reason="kernel Landlock ABI < 4")


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, **extra}


@needs_landlock
def test_backstop_alone_blocks_a_write(workdir):
    """With openat/open/creat gone from the filter, Landlock still keeps the file off disk."""
    target = workdir / "through-the-gap"
    code = f"open({str(target)!r}, 'w').write('x')"
    res = run_bubble([PY, "-c", code], env=_env(BUBBLE_TEST_OMIT_ROWS="open,openat,creat"))
    assert "PermissionError" in res.stderr  # EACCES from Landlock, not EPERM from seccomp
    assert not target.exists()
    assert any("not mediated: open, openat, creat" in e.get("message", "") for e in res.events)
    # The control: the same hook with writes allowed does write (the gap is real).
    res = run_bubble(
        [PY, "-c", code], ["--deny-fs=0"], env=_env(BUBBLE_TEST_OMIT_ROWS="open,openat,creat")
    )
    assert target.read_text() == "x"


@needs_landlock
def test_backstop_alone_blocks_tcp():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(0.5)
    port = srv.getsockname()[1]
    code = (
        f"import socket; s = socket.socket(); s.connect(('127.0.0.1', {port})); print('connected')"
    )
    try:
        res = run_bubble([PY, "-c", code], env=_env(BUBBLE_TEST_OMIT_ROWS="socket,connect"))
        assert "connected" not in res.stdout and "PermissionError" in res.stderr
        with pytest.raises(TimeoutError):
            srv.accept()
    finally:
        srv.close()


def test_runs_without_landlock_say_so(workdir):
    res = run_bubble(
        ["/bin/sh", "-c", f"echo x > {workdir}/f; echo after"],
        env=_env(BUBBLE_TEST_LANDLOCK_ABI="0"),
    )
    assert res.stdout == "after\n" and not (workdir / "f").exists()
    notes = [e["message"] for e in res.of_type("sandbox.msg")]
    assert any("Landlock is not available" in n for n in notes)


def _left_behind(marker: str) -> list[int]:
    """Live processes whose command line carries `marker` (zombies are not alive)."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                if marker.encode() not in fh.read():
                    continue
            with open(f"/proc/{name}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] not in "ZX":
                    pids.append(int(name))
        except OSError:
            continue
    return pids


def _no_tree_left(marker: str) -> None:
    time.sleep(0.2)
    assert not _left_behind(marker), f"processes left behind: {_left_behind(marker)}"


def _marker() -> str:
    return f"bubble-limit-test-{os.getpid()}-{time.monotonic_ns()}"


def test_fork_bomb_ends_at_max_procs():
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    mark = _marker()
    start = time.monotonic()
    res = run_bubble([PY, "-c", bomb, mark], ["--max-procs", "40", "--timeout", "60"], timeout=90)
    assert time.monotonic() - start < 30
    assert res.exit["limit"] == "procs" and not res.exit["timed_out"]
    _no_tree_left(mark)


def test_memory_hog_ends_at_memory_limit():
    hog = "chunks = []\nwhile True:\n    chunks.append(bytearray(16 << 20))"
    mark = _marker()
    res = run_bubble([PY, "-c", hog, mark], ["--memory", "200M", "--timeout", "60"], timeout=90)
    assert res.exit["limit"] == "memory", res.exit
    assert res.exit["exit_code"] != 0 or res.exit["signal"]
    _no_tree_left(mark)


def test_endless_loop_ends_at_cpu_limit():
    mark = _marker()
    start = time.monotonic()
    res = run_bubble(
        ["/bin/sh", "-c", "while :; do :; done", mark],
        ["--cpu", "1", "--timeout", "60"],
        timeout=90,
    )
    assert time.monotonic() - start < 15
    assert res.exit["limit"] == "cpu" and res.exit["signal"] in (24, 9)  # SIGXCPU, then SIGKILL
    _no_tree_left(mark)


def test_output_flood_ends_at_max_output():
    """100 MB on stdout with --max-output 1M: 1 MiB kept, the rest counted, the run ended."""
    mark = _marker()
    res = run_bubble(
        ["/bin/sh", "-c", "head -c 100000000 /dev/zero; echo done", mark],
        ["--max-output", "1M"],
        timeout=90,
    )
    assert len(res.stdout) == 1 << 20 and "done" not in res.stdout
    assert res.exit["limit"] == "output"
    assert "output_kept=1048576" in res.exit["notes"] and "output_dropped=" in res.exit["notes"]
    _no_tree_left(mark)


def test_timeout_kills_a_pidns_tree():
    mark = _marker()
    script = f"sleep 100 & (setsid sh -c 'sleep 102; : {mark}' &) ; wait"
    start = time.monotonic()
    res = run_bubble(["/bin/sh", "-c", script, mark], ["--pidns", "--timeout", "1"], timeout=60)
    assert time.monotonic() - start < 10
    assert res.exit["timed_out"] and res.exit["limit"] == "timeout"
    _no_tree_left(mark)


@pytest.mark.parametrize("flags", [[], ["--pidns"]], ids=["plain", "pidns"])
def test_supervisor_death_takes_the_whole_tree(flags):
    """SIGKILL the supervisor mid-run: the target *and* a daemonised grandchild die with it
    (the keeper's parent-death signal, or the namespace), nothing runs on unsupervised."""
    mark = _marker()
    script = f"(setsid sh -c 'sleep 60; : {mark}' &); echo ready; sleep 60"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bubble",
            "run",
            "--events",
            "/dev/null",
            *flags,
            "--",
            "/bin/sh",
            "-c",
            script,
            mark,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline() == "ready\n"
        deadline = time.monotonic() + 5
        while len(_left_behind(mark)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(_left_behind(mark)) >= 2, "the target and its daemon should be running"
        proc.kill()  # SIGKILL: no handler of ours runs
        proc.wait(timeout=10)
        deadline = time.monotonic() + 5
        while _left_behind(mark) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _left_behind(mark), f"survived the supervisor: {_left_behind(mark)}"
    finally:
        proc.kill()
        proc.stdout.close()
