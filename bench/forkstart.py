"""(c) start-up through the fork server (`bubble forkserver`), as web and worker runs start.

Two timings per run, measured in this process around `ForkServer.spawn`: to the target's
start (the launcher's first event, `process.spawn`, written once the target exists) and to
the launcher's end (the whole `bubble run -- /bin/true`, as the cold rows measure it).
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable

from common import PYTHON, BenchError

from bubble.jobs.forkclient import ForkServer


class ForkRuns:
    """A fork server for the benchmark, and one timed run through it at a time."""

    def __init__(self) -> None:
        self.server = ForkServer(PYTHON, {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
        if not self.server.wait_ready(60):
            raise BenchError("the fork server did not start")
        self.to_start: list[float] = []

    def once(self) -> float:
        """Milliseconds of one `bubble run -- /bin/true` through the fork server; the time
        to its first event goes to `to_start`."""
        ev_r, ev_w = os.pipe()
        null = os.open(os.devnull, os.O_RDWR)
        try:
            t0 = time.perf_counter()
            launched = self.server.spawn(
                ["--events-fd", str(ev_w), "--", "/bin/true"],
                {"PATH": "/usr/bin:/bin"},
                "/",
                [null, null, null, ev_w],
                [ev_w],
            )
            os.close(ev_w)
            if launched is None:
                raise BenchError("the fork server refused a run")
            select.select([ev_r], [], [], 30)
            self.to_start.append((time.perf_counter() - t0) * 1e3)
            while os.read(ev_r, 65536):
                pass
            status = launched.wait(30)
            total = (time.perf_counter() - t0) * 1e3
        finally:
            os.close(ev_r)
            os.close(null)
        if status != 0:
            raise BenchError(f"/bin/true through the fork server ended with {status}")
        return total

    def close(self) -> None:
        self.server.close()


def jobs() -> tuple[ForkRuns, dict[str, Callable[[], float]]]:
    runs = ForkRuns()
    return runs, {"bubble-fork": runs.once}
