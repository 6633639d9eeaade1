"""A hostile target against the supervisor itself: floods and crowds of threads.

Every denied call must be answered and recorded (counts checked), the supervisor must not
crash or hang, and its own memory must stay bounded however many events pass through it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def test_flood_of_200000_denied_calls(probe, workdir):
    with tempfile.NamedTemporaryFile("r", suffix=".ndjson") as ev:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bubble",
                "run",
                "--events",
                ev.name,
                "--",
                probe,
                "flood",
                "200000",
                "85",
                f"s:{workdir}/x",
                "0644",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        _, status, rusage = os.wait4(proc.pid, 0)
        out = proc.stdout.read()
        proc.stdout.close()
        lines = Path(ev.name).read_text().splitlines()
    assert os.waitstatus_to_exitcode(status) == 0
    assert "FLOOD 200000 same=200000 errno=EPERM" in out and "ALIVE" in out
    alerts = [line for line in lines if '"policy.alert"' in line]
    assert len(alerts) == 200000, "every denied call is one event"
    seqs = [json.loads(line)["seq"] for line in lines]
    assert seqs == list(range(1, len(lines) + 1))
    assert not (workdir / "x").exists()
    # The supervisor streams events out: its memory does not grow with their number.
    assert rusage.ru_maxrss < 80_000, f"supervisor used {rusage.ru_maxrss} kB"


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
