"""The escape suite: every known way around a seccomp sandbox must be blocked (checked from
outside), logged with the right category, and leave the probe running.

The Python probes are the ones `bubble selftest` runs (src/bubble/sandbox/escapes.py); the C
probe adds what Python cannot do (int 0x80, clone3, vfork, races on raw buffers).
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from bubble.sandbox.escapes import ESCAPES
from bubble.sandbox.selftest import run_escape, target_python
from tests.conftest import AS_ROOT, ROOT, run_bubble


@pytest.mark.parametrize("escape", ESCAPES, ids=lambda e: e.name)
def test_escape_blocked_logged_continued(escape):
    outcome = run_escape(escape, target_python())
    assert outcome.blocked, f"{escape.name}: not blocked ({outcome.detail})"
    assert outcome.logged, f"{escape.name}: no {escape.category} event naming {escape.syscall}"
    assert outcome.continued, f"{escape.name}: the probe did not keep running"


@pytest.mark.skipif(not AS_ROOT, reason="needs root to switch to a second account")
def test_selftest_as_the_same_user_as_bubble(nobody_src):
    """Bubble and the target as one unprivileged user: nothing separates them but Bubble."""
    proc = subprocess.run(
        [
            "runuser",
            "-u",
            "nobody",
            "--",
            "env",
            f"PYTHONPATH={nobody_src}",
            "/usr/bin/python3",
            "-m",
            "bubble",
            "selftest",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd="/",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(ESCAPES)} of {len(ESCAPES)} probes blocked" in proc.stdout


def test_selftest_command_prints_the_table():
    proc = subprocess.run(
        [os.sys.executable, "-m", "bubble", "selftest"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout
    for feature in (
        "USER_NOTIF",
        "WAIT_KILLABLE_RECV",
        "SYNC_WAKE_UP",
        "Landlock",
        "user namespaces",
        "network wall",
    ):
        assert feature in proc.stdout
    assert all(e.name in proc.stdout for e in ESCAPES)


@pytest.mark.parametrize("nr,name", [(5, "open"), (8, "creat")])
def test_i386_int80_write_denied_and_logged(nr, name, probe, workdir):
    args = (
        ["s:" + str(workdir / "x"), "0x41", "0644"]
        if name == "open"
        else ["s:" + str(workdir / "x"), "0644"]
    )
    res = run_bubble([probe, "i386", str(nr), *args])
    assert "errno=EPERM" in res.stdout and "ALIVE" in res.stdout
    assert not (workdir / "x").exists()
    [alert] = res.alerts
    assert (alert["syscall"], alert["arch"], alert["category"], alert["path"]) == (
        name,
        "i386",
        "fs",
        str(workdir / "x"),
    )


@pytest.mark.parametrize("mode", ["fork", "vfork", "clone3", "spawn"])
def test_children_inherit_the_filter(mode, probe, workdir):
    res = run_bubble([probe, mode, "85", f"s:{workdir}/x", "0644"])
    assert "errno=EPERM" in res.stdout and not (workdir / "x").exists()
    assert [a["syscall"] for a in res.alerts] == ["creat"]


def test_inherited_descriptors_are_closed(probe, tmp_path):
    """A descriptor the launcher's caller leaks must not reach the target."""
    secret = tmp_path / "secret"
    secret.write_text("s")
    fd = os.open(secret, os.O_RDWR)
    try:
        out = subprocess.run(
            [
                os.sys.executable,
                "-m",
                "bubble",
                "run",
                "--events",
                "/dev/null",
                "--",
                "/bin/ls",
                "/proc/self/fd",
            ],
            pass_fds=(fd,),
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.split()
    finally:
        os.close(fd)
    assert str(fd) not in out and sorted(out) == ["0", "1", "2", "3"]  # 3: ls's own dir fd


def test_core_dump_not_written(workdir):
    """The kernel writes core files for the target, past any filter: RLIMIT_CORE stops it."""
    code = "import os, signal; os.chdir(os.sys.argv[1]); os.kill(os.getpid(), signal.SIGSEGV)"
    res = run_bubble([target_python(), "-c", code, str(workdir)], ["--deny-fs=0"])
    assert res.exit["signal"] == signal.SIGSEGV and res.rc == 128 + signal.SIGSEGV
    assert not list(workdir.iterdir()), "a core file was written"


def test_racing_thread_cannot_swap_the_checked_path(workdir):
    """One thread flips the path between /dev/null (answered with our own /dev/null) and a
    real file while another opens it for writing: the file must never appear, and every call
    gets exactly one event."""
    target = str(workdir / "race").encode()
    code = f"""
import ctypes, os, threading
libc = ctypes.CDLL(None, use_errno=True)
buf = ctypes.create_string_buffer(256)
paths = [b"/dev/null", {target!r}]
stop = False
def flip():
    i = 0
    while not stop:
        buf.value = paths[i & 1]; i += 1
t = threading.Thread(target=flip); t.start()
opened = 0
for _ in range(2000):
    fd = libc.open(buf, os.O_WRONLY | os.O_CREAT, 0o644)
    if fd >= 0:
        opened += 1; os.close(fd)
stop = True; t.join()
print("OPENED", opened)
"""
    res = run_bubble([target_python(), "-c", code])
    assert "OPENED" in res.stdout, res.stderr
    assert not Path(target.decode()).exists(), "the race created the file"
    calls = [e for e in res.events if e.get("syscall") == "openat"]  # glibc open() is openat
    assert len(calls) == 2000
    assert {e["type"] for e in calls} <= {"policy.alert", "fs.write"}
    assert all(e["detail"].startswith("pseudo-device") for e in calls if e["type"] == "fs.write")


def test_security_doc_lists_every_probe():
    doc = (ROOT / "docs" / "security.md").read_text()
    missing = [e.name for e in ESCAPES if f"| {e.name.replace('|', chr(92) + '|')} |" not in doc]
    assert not missing, f"docs/security.md lacks: {missing}"
