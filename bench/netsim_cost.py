"""What `--net-sim` adds to a run (issue "A simulated internet"): `bubble run -- /bin/true`
inside the wall, with and without the simulated internet, interleaved so that the machine's
noise hits both alike. Reports medians of N runs each and the median of the paired
differences (robust when the machine is busy).

    .venv/bin/python bench/netsim_cost.py [N]      (as root, and as an unprivileged user)

The cost is the server's start (forked before the target; its imports overlap with the
target's set-up), joining the namespaces, the nftables rule (libnftables), binding, and at
the end its stop (SIGTERM, record what is open, exit).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


def one(flags: list[str]) -> tuple[float, int]:
    """(wall-clock ms of the whole `bubble run`, its process.exit duration_ms)."""
    with tempfile.NamedTemporaryFile("r", suffix=".ndjson") as ev:
        cmd = [
            sys.executable,
            "-m",
            "bubble",
            "run",
            "--events",
            ev.name,
            *flags,
            "--",
            "/bin/true",
        ]
        t = time.perf_counter()
        subprocess.run(cmd, check=True)
        wall = (time.perf_counter() - t) * 1000
        last = json.loads(ev.read().splitlines()[-1])
    assert last["type"] == "process.exit", last
    return wall, last["duration_ms"]


def _line(name: str, values: list[float]) -> str:
    q = statistics.quantiles(values, n=4)
    return f"{name}: median {statistics.median(values):.1f} ms (p25 {q[0]:.1f}, p75 {q[2]:.1f})"


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 21
    one(["--net-sim"])  # warm the page cache and .pyc files
    sim: list[tuple[float, int]] = []
    wall: list[tuple[float, int]] = []
    for _ in range(n):
        sim.append(one(["--net-sim"]))
        wall.append(one([]))
    print(f"uid {os.getuid()}, {n} runs each, load {os.getloadavg()[0]:.1f}")
    print(_line("bubble run -- /bin/true (wall only), wall-clock", [w for w, _ in wall]))
    print(_line("bubble run --net-sim -- /bin/true,   wall-clock", [w for w, _ in sim]))
    paired = [s[0] - w[0] for s, w in zip(sim, wall, strict=True)]
    print(_line("added by --net-sim, paired, wall-clock", paired))
    paired_ms = [float(s[1] - w[1]) for s, w in zip(sim, wall, strict=True)]
    print(_line("added by --net-sim, paired, process.exit duration_ms", paired_ms))


if __name__ == "__main__":
    main()
