"""(f) runs per minute through the web: short runs (`/bin/true`) posted back to back to a
`bubble serve --workers N`, with the fork server and with cold launchers, side by side."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from common import BenchError, Row, median, ratio
from server import Server

WL = "(f) runs/minute via the web (/bin/true)"
TERMINAL = ("completed", "failed", "timeout", "cancelled", "interrupted")


def _batch(srv: Server, n: int) -> float:
    """Runs per minute for `n` runs posted at once, until the last one ended."""
    t0 = time.perf_counter()
    ids = [srv.post_run(["/bin/true"], timeout=30) for _ in range(n)]
    for run_id in ids:
        deadline = time.monotonic() + 120
        while True:
            status = srv.session.get(f"{srv.url}/api/runs/{run_id}", timeout=30).json()["status"]
            if status in TERMINAL:
                break
            if time.monotonic() > deadline:
                raise BenchError(f"run {run_id} did not end")
            time.sleep(0.02)
        if status != "completed":
            raise BenchError(f"run {run_id} ended {status}")
    return n / (time.perf_counter() - t0) * 60


def measure(runs: int, rounds: int) -> list[Row]:
    rows: list[Row] = []
    for workers in (1, 2):
        with (
            tempfile.TemporaryDirectory(prefix="bubble-bench-rpm-") as a,
            tempfile.TemporaryDirectory(prefix="bubble-bench-rpm-cold-") as b,
            Server(Path(a), args=("--workers", str(workers))) as fork,
            Server(Path(b), {"BUBBLE_FORK_SERVER": "0"}, ("--workers", str(workers))) as cold,
        ):
            _batch(fork, 2)  # warm-up; the fork server is ready after it
            _batch(cold, 2)
            rates: dict[str, list[float]] = {"fork": [], "cold": []}
            for _ in range(rounds):  # interleaved
                rates["fork"].append(_batch(fork, runs))
                rates["cold"].append(_batch(cold, runs))
        med = {k: median(v) for k, v in rates.items()}
        for key, label in (("fork", "fork server"), ("cold", "cold launcher")):
            row = Row(WL, f"{workers} worker(s), {label}", med[key], "runs/min")
            row.samples = rates[key]
            if key == "fork":
                row.vs_ref, row.ref = ratio(med["fork"], med["cold"]), "cold launcher"
            rows.append(row)
    return rows
