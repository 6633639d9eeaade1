"""What the network wall costs at start-up (issue "Network intent").

Two figures, medians of N runs:
  step  `netns.enter()` alone (unshare + lo up + two local routes), in forked children;
  run   `bubble run -- /bin/true` with the wall against the same run without it
        (BUBBLE_TEST_NO_NETNS=1: identical filter, no namespace), interleaved.

    .venv/bin/python bench/netns_cost.py [N]
Run it as root and as an unprivileged user (the latter makes a user namespace too).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

from bubble.policy import Policy
from bubble.sandbox import netns


def step(n: int) -> list[float]:
    out = []
    for _ in range(n):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            t = time.perf_counter()
            ok = netns.enter(Policy())
            os.write(w, f"{(time.perf_counter() - t) * 1000:.3f} {ok}".encode())
            os._exit(0)
        os.close(w)
        ms, ok = os.read(r, 100).decode().split()
        os.close(r)
        os.waitpid(pid, 0)
        if ok != "True":
            raise SystemExit("no network namespace on this machine")
        out.append(float(ms))
    return out


def runs(n: int) -> tuple[list[float], list[float]]:
    cmd = [sys.executable, "-m", "bubble", "run", "--events", "/dev/null", "--", "/bin/true"]
    wall: list[float] = []
    bare: list[float] = []
    for _ in range(n):
        for sink, extra in ((wall, {}), (bare, {netns.NO_NETNS_ENV: "1"})):
            t = time.perf_counter()
            subprocess.run(cmd, env={**os.environ, **extra}, check=True)
            sink.append((time.perf_counter() - t) * 1000)
    return wall, bare


def _line(name: str, values: list[float]) -> str:
    q = statistics.quantiles(values, n=4)
    return f"{name}: median {statistics.median(values):.2f} ms (p25 {q[0]:.2f}, p75 {q[2]:.2f})"


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    print(f"uid {os.getuid()}, {n} runs each")
    print(_line("netns.enter()", step(n)))
    wall, bare = runs(n)
    print(_line("bubble run -- /bin/true, wall", wall))
    print(_line("bubble run -- /bin/true, no wall", bare))
    print(f"difference of medians: {statistics.median(wall) - statistics.median(bare):+.1f} ms")


if __name__ == "__main__":
    main()
