"""What `--net-sim` adds to a run (issue "A simulated internet"): `bubble run -- /bin/true`
inside the wall, with and without the simulated internet, interleaved so that the machine's
noise hits both alike. Reports medians of N runs each and the median of the paired
differences (robust when the machine is busy).

    .venv/bin/python bench/netsim_cost.py [N]      (as root, and as an unprivileged user)

The target waits for the server's fork, joining the namespaces, the nftables rule
(libnftables) and binding; the server imports asyncio, ssl and dnslib after that, while the
target runs. The stop (SIGTERM, record what is open, exit) waits for those imports when the
program ends at once, as /bin/true does: the whole-run figures include that, the "until the
target runs" figures do not.
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


def to_start(flags: list[str]) -> float:
    """ms from launching `bubble run` until the target runs (it prints the clock)."""
    run = [sys.executable, "-m", "bubble", "run", "--events", "/dev/null", *flags, "--"]
    t = time.time()
    out = subprocess.run([*run, "/bin/date", "+%s.%N"], check=True, capture_output=True)
    return (float(out.stdout) - t) * 1000


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
    # Start-up proper: until the target runs. The rest of the difference above is the stop,
    # which for a program that exits at once waits for the server's imports to finish.
    starts = [(to_start(["--net-sim"]), to_start([])) for _ in range(n)]
    print(_line("until the target runs, --net-sim", [a for a, _ in starts]))
    print(_line("until the target runs, wall only", [b for _, b in starts]))
    print(_line("added by --net-sim until the target runs, paired", [a - b for a, b in starts]))


if __name__ == "__main__":
    main()
