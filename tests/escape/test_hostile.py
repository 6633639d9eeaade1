"""A hostile target against the supervisor itself: floods and crowds of threads.

Every denied call must be answered and recorded (counts checked), the supervisor must not
crash or hang, and its own memory must stay bounded however many events pass through it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path


def _flood(probe: str, workdir: Path, count: int) -> tuple[int, str, list[str], int]:
    """(exit status, stdout, event lines, the supervisor's peak RSS in kB) of a flood.

    The peak is read by the target from /proc/$PPID/status (the supervisor's own mm): wait4's
    figure would include the memory of the pytest process the launcher was forked from."""
    script = f"{probe} flood {count} 85 s:{workdir}/x 0644; grep VmHWM /proc/$PPID/status"
    with tempfile.NamedTemporaryFile("r", suffix=".ndjson") as ev:
        cmd = [
            sys.executable,
            "-m",
            "bubble",
            "run",
            "--events",
            ev.name,
            "--",
            "/bin/sh",
            "-c",
            script,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        lines = Path(ev.name).read_text().splitlines()
    hwm = int(proc.stdout.split("VmHWM:")[1].split()[0])
    return proc.returncode, proc.stdout, lines, hwm


def test_flood_of_200000_denied_calls(probe, workdir):
    _, _, _, small_rss = _flood(probe, workdir, 20000)
    status, out, lines, rss = _flood(probe, workdir, 200000)
    assert status == 0
    assert "FLOOD 200000 same=200000 errno=EPERM" in out and "ALIVE" in out
    alerts = [line for line in lines if '"policy.alert"' in line]
    assert len(alerts) == 200000, "every denied call is one event"
    seqs = [json.loads(line)["seq"] for line in lines]
    assert seqs == list(range(1, len(lines) + 1))
    assert not (workdir / "x").exists()
    # The supervisor streams events out: ten times the events, (almost) the same memory.
    assert rss - small_rss < 2_000, f"supervisor grew from {small_rss} to {rss} kB"
    assert rss < 40_000


def test_500_threads_each_denied(probe, workdir):
    with tempfile.NamedTemporaryFile("r", suffix=".ndjson") as ev:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "bubble",
                "run",
                "--events",
                ev.name,
                "--",
                probe,
                "threads",
                "500",
                "85",
                f"s:{workdir}/x",
                "0644",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
        events = [json.loads(line) for line in Path(ev.name).read_text().splitlines()]
    assert "THREADS 500 same=500 errno=EPERM" in out
    alerts = [e for e in events if e["type"] == "policy.alert"]
    assert len(alerts) == 500 and len({a["pid"] for a in alerts}) == 500, "one event per thread"
    assert not (workdir / "x").exists()
