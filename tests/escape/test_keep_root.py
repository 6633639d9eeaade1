"""`--keep-root` keeps uid 0 but not root's administrative powers (issue 13, findings 4, 5).

Each probe is harmless should it get through (a missing loop device, a file that cannot shut
down, out-of-range values), so a regression shows as a wrong errno, never as host damage.
"""

from __future__ import annotations

import dataclasses
import time

import pytest

from bubble.sandbox.escapes import ESCAPES, Escape
from bubble.sandbox.selftest import run_escape, target_python
from tests.conftest import AS_ROOT, run_bubble

pytestmark = pytest.mark.skipif(not AS_ROOT, reason="--keep-root needs root")

ROOT_ONLY = (
    Escape(
        "LOOP_CTL_REMOVE on a read-only /dev/loop-control",
        "fd = os.open('/dev/loop-control', os.O_RDONLY)\ndone(sc(16, fd, 0x4C81, 1 << 20))",
        "sys",
        syscall="ioctl",
    ),
    Escape(
        "USERFAULTFD_IOC_NEW on /dev/userfaultfd",
        "fd = os.open('/dev/userfaultfd', os.O_RDONLY)\ndone(sc(16, fd, 0xAA00, 0o2000000))",
        "sys",
        syscall="ioctl",
    ),
)
ADMIN = ROOT_ONLY + tuple(
    e for e in ESCAPES if e.syscall in ("ioctl", "adjtimex", "clock_adjtime", "syslog")
)


@pytest.mark.parametrize("caps", [(), ("--keep-caps",)], ids=["dropped", "kept"])
@pytest.mark.parametrize("escape", ADMIN, ids=lambda e: e.name)
def test_admin_calls_denied_and_logged_even_as_root(escape, caps):
    escape = dataclasses.replace(escape, flags=("--keep-root", *caps, *escape.flags))
    outcome = run_escape(escape, target_python())
    assert outcome.blocked, f"{escape.name}: not blocked ({outcome.detail})"
    assert outcome.logged, f"{escape.name}: no {escape.category} event naming {escape.syscall}"
    assert outcome.continued


def _caps(flags: list[str]) -> dict[str, str]:
    res = run_bubble(["/bin/grep", "-E", "^(Uid|Cap)", "/proc/self/status"], flags)
    assert res.rc == 0, res.stderr
    return dict(line.split(":\t") for line in res.stdout.splitlines())


def test_keep_root_keeps_uid_0_and_only_file_access_capabilities():
    status = _caps(["--keep-root"])
    assert status["Uid"].split()[0] == "0"
    kept = 0xFF  # CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID
    for name in ("CapEff", "CapPrm", "CapBnd"):
        assert int(status[name], 16) == kept, (name, status[name])
    assert int(status["CapAmb"], 16) == 0
    res = run_bubble(["/bin/head", "-c", "5", "/etc/shadow"], ["--keep-root"])
    assert res.rc == 0 and len(res.stdout) == 5, "root-only files stay readable"


def test_keep_caps_keeps_them():
    status = _caps(["--keep-root", "--keep-caps"])
    assert int(status["CapBnd"], 16) & (1 << 21), "CAP_SYS_ADMIN kept with --keep-caps"


STALL = r"""
import ctypes, fcntl, mmap, os, struct
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
dev = os.open("/dev/userfaultfd", os.O_RDONLY)
uffd = fcntl.ioctl(dev, 0xAA00, os.O_CLOEXEC)
fcntl.ioctl(uffd, 0xC018AA3F, bytearray(struct.pack("QQQ", 0xAA, 0, 0)))  # UFFDIO_API
page = mmap.mmap(-1, 4096)
addr = ctypes.addressof(ctypes.c_char.from_buffer(page))
fcntl.ioctl(uffd, 0xC020AA00, bytearray(struct.pack("QQQQ", addr, 4096, 1, 0)))  # REGISTER
print("STALLING", flush=True)
# openat with write flags is mediated: the supervisor must read the path from a page whose
# fault nobody will ever resolve.
r = libc.syscall(257, -100, ctypes.c_void_p(addr), 0o101, 0o644)
print("RESULT", r, ctypes.get_errno(), flush=True)
import time; time.sleep(600)
"""


def test_a_stalled_memory_read_delays_neither_the_timeout_nor_other_calls():
    """The red team's stall: a path argument on a userfaultfd page. The ioctl that creates the
    userfaultfd is denied now; with that row left out (test hook), the stall must still end in
    a bounded time with an `<unreadable: ...>` deny, and --timeout 3 must end the run on time."""
    started = time.monotonic()
    res = run_bubble(
        ["/usr/bin/python3", "-c", STALL],
        ["--keep-root", "--keep-caps", "--timeout", "3"],
        timeout=60,
        env={"BUBBLE_TEST_OMIT_ROWS": "ioctl", "PATH": "/usr/bin:/bin"},
    )
    took = time.monotonic() - started
    assert "STALLING" in res.stdout, res.stderr
    assert took < 6, f"--timeout 3 ended the run after {took:.1f} s"
    assert res.exit["timed_out"] is True
    stalled = [e for e in res.alerts if e["syscall"] == "openat"]
    assert stalled and "<unreadable: ETIMEDOUT>" in stalled[0]["path"], res.alerts
    assert "RESULT -1 1" in res.stdout, "the stalled call is denied with EPERM and continues"
