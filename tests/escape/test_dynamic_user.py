"""`--user dynamic` (issue 13, finding 2): a uid of the run's own puts uid-wide calls out of
reach of the host's processes even where the filter would miss one.

Checked from outside: a `sleep` running as `nobody` keeps its nice value while the target
calls setpriority(PRIO_USER, 0, 19) with the filter row left out (test hook).
"""

from __future__ import annotations

import os
import subprocess

import pytest

from bubble.sandbox.dynuser import FIRST, LAST
from tests.conftest import AS_ROOT, run_bubble

pytestmark = pytest.mark.skipif(not AS_ROOT, reason="changing uid needs root")

RENICE_ALL = (
    "import ctypes; libc = ctypes.CDLL(None, use_errno=True); "
    "print('RESULT', libc.setpriority(2, 0, 19), ctypes.get_errno())"
)


@pytest.fixture
def bystander():
    """A process of `nobody` outside the sandbox."""
    proc = subprocess.Popen(["runuser", "-u", "nobody", "--", "sleep", "60"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _nice(pid: int) -> int:
    for child in [pid, *map(int, os.popen(f"pgrep -P {pid}").read().split())]:
        with open(f"/proc/{child}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        if os.stat(f"/proc/{child}").st_uid != 0:
            return int(fields[16])
    raise AssertionError("no nobody process found")


def test_the_run_gets_a_uid_of_its_own():
    res = run_bubble(["/usr/bin/id", "-u"], ["--user", "dynamic"])
    uid = int(res.stdout)
    assert FIRST <= uid <= LAST
    assert res.events[0]["user"] == f"dynamic:{uid}"


@pytest.mark.parametrize("user,reaches", [("nobody", True), ("dynamic", False)])
def test_an_unmediated_uid_wide_call_reaches_only_a_shared_uid(bystander, user, reaches):
    res = run_bubble(
        ["/usr/bin/python3", "-c", RENICE_ALL],
        ["--user", user],
        env={"BUBBLE_TEST_OMIT_ROWS": "setpriority", "PATH": "/usr/bin:/bin"},
    )
    assert "RESULT 0" in res.stdout, res.stdout + res.stderr  # the row is left out
    assert (_nice(bystander.pid) == 19) is reaches
