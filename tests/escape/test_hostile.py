"""A hostile target against the supervisor itself: floods and crowds of threads.

Every denied call must be answered and recorded (counts checked), the supervisor must not
crash or hang, and its own memory must stay bounded however many events pass through it.
"""

from __future__ import annotations

from tests.conftest import Result, run_bubble


def _flood(probe: str, workdir, count: int) -> tuple[Result, int]:
    """A flood of `count` denied creat calls, and the supervisor's peak RSS in kB.

    The peak is read by the target from /proc/$PPID/status, the supervisor's own mm (its
    parent is the keeper's parent: hence ../..): wait4's figure would include the memory of the
    pytest process the launcher was forked from."""
    script = (
        f"{probe} flood {count} 85 s:{workdir}/x 0644; "
        "grep VmHWM /proc/$(awk '{print $4}' /proc/$PPID/stat)/status"
    )
    res = run_bubble(["/bin/sh", "-c", script], timeout=300)
    return res, int(res.stdout.split("VmHWM:")[1].split()[0])


def test_flood_of_200000_denied_calls(probe, workdir):
    _, small_rss = _flood(probe, workdir, 20000)
    res, rss = _flood(probe, workdir, 200000)
    assert res.rc == 0
    assert "FLOOD 200000 same=200000 errno=EPERM" in res.stdout and "ALIVE" in res.stdout
    assert len(res.alerts) == 200000, "every denied call is one event"
    assert not (workdir / "x").exists()
    # The supervisor streams events out: ten times the events, (almost) the same memory.
    assert rss - small_rss < 2_000, f"supervisor grew from {small_rss} to {rss} kB"
    assert rss < 40_000


def test_500_threads_each_denied(probe, workdir):
    res = run_bubble([probe, "threads", "500", "85", f"s:{workdir}/x", "0644"], timeout=120)
    assert "THREADS 500 same=500 errno=EPERM" in res.stdout
    assert len(res.alerts) == 500 and len({a["pid"] for a in res.alerts}) == 500, "one per thread"
    assert not (workdir / "x").exists()
