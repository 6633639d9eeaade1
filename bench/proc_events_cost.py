"""The per-fork cost of `process.end`: fork + exit + wait with and without a process-events
connector listener subscribed (as the supervisor is during a run). The kernel builds and
multicasts a fork and an exit message per process only while someone listens; nothing else
changes on the target's side. Run as root; interleaved rounds, medians.

    .venv/bin/python bench/proc_events_cost.py [FORKS]
"""

from __future__ import annotations

import os
import statistics
import sys
import time

from bubble.sandbox import lifecycle


def forks(n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    return (time.perf_counter() - t) / n * 1e6


def drain(sock) -> None:
    while True:
        try:
            sock.recv(65536)
        except (BlockingIOError, OSError):
            return


def main(n: int) -> None:
    without, with_ = [], []
    for _ in range(5):
        without.append(forks(n))
        sock, why = lifecycle.open_listener()
        if sock is None:
            sys.exit(f"no listener: {why}")
        with_.append(forks(n))
        drain(sock)
        sock.close()
    a, b = statistics.median(without), statistics.median(with_)
    print(f"fork+exit+wait: {a:.1f} us without a listener, {b:.1f} us with one "
          f"(+{b - a:.1f} us, {100 * (b - a) / a:+.1f} %), {n} forks x 5 rounds")  # fmt: skip


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
