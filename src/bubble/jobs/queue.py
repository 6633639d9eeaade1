"""At most K runs at once: a bounded FIFO of run ids and K worker threads.

The in-process queue of the embedded default. `rqueue.RQQueue` has the same small
interface (`check_room`, `put`, `depth`, `close`) over Redis, for `bubble worker`s.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from bubble.errors import BubbleError

log = logging.getLogger("bubble.jobs")


class QueueFull(BubbleError):
    """Too many runs are waiting."""


class RunQueue:
    """Calls `work(run_id)` on one of `workers` threads, in submission order."""

    def __init__(self, work: Callable[[str], None], workers: int, max_waiting: int) -> None:
        self._work = work
        self._max_waiting = max_waiting
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._threads = [
            threading.Thread(target=self._loop, name=f"run-worker-{i}", daemon=True)
            for i in range(max(1, workers))
        ]
        for thread in self._threads:
            thread.start()

    def depth(self) -> int:
        return self._queue.qsize()

    def check_room(self) -> None:
        if self._queue.qsize() >= self._max_waiting:
            raise QueueFull(
                f"{self._queue.qsize()} runs are already waiting",
                "wait for some to finish, or raise the server's queue limit",
            )

    def put(self, run_id: str, _timeout: float = 0.0) -> None:
        self._queue.put(run_id)

    def close(self, timeout: float = 10.0) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout)

    def _loop(self) -> None:
        while (run_id := self._queue.get()) is not None:
            try:
                self._work(run_id)
            except Exception:  # one broken run must not stop the worker
                log.exception("run %s failed in the orchestrator", run_id)
