"""Wake-ups for readers of a run: "something new was stored for run X".

The store is the truth; the hub only says when to look again, so a reader never misses
data, it can at most look once too often. Readers take `version(run)` *before* querying the
store and then `wait(run, version, timeout)`, so a publish that lands between the query
and the wait still wakes them.
"""

from __future__ import annotations

import threading


class Hub:
    """One condition variable and a version counter per run with news."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._versions: dict[str, int] = {}

    def version(self, run_id: str) -> int:
        with self._cond:
            return self._versions.get(run_id, 0)

    def publish(self, run_id: str) -> None:
        with self._cond:
            self._versions[run_id] = self._versions.get(run_id, 0) + 1
            self._cond.notify_all()

    def forget(self, run_id: str) -> None:
        """Called once a run is terminal. Waiters wake (their version no longer matches)
        and then see the terminal state in the store."""
        with self._cond:
            self._versions.pop(run_id, None)
            self._cond.notify_all()

    def wait(self, run_id: str, version: int, timeout: float) -> bool:
        """Block until `run_id` changes from `version` or `timeout` passes. True if it did."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._versions.get(run_id, 0) != version, timeout=timeout
            )
