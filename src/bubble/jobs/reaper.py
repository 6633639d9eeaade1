"""Runs whose executor died: failed, naming the worker, within a bounded time.

An executing run's heartbeat moves every `heartbeat` seconds (`executor.py`). A run still
`running` whose heartbeat is older than `stale_after` lost its worker (killed, machine
gone): it is failed with a compare-and-set, so a worker that was only slow and comes back
cannot overwrite the verdict, nor can two reapers both claim it. The web server (with a
queue) and every `bubble worker` run a reaper; the bound is `stale_after` plus one sweep.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from bubble.jobs import schema
from bubble.jobs.report import counts
from bubble.jobs.store import Store, now_iso

log = logging.getLogger("bubble.jobs")


def fail_run(store: Store, run_id: str, worker: str | None, why: str, expected: str) -> bool:
    """Fail a run that is still in `expected` state; True if this call did it."""
    done = store.set_status_if(
        run_id,
        expected,
        status=schema.FAILED,
        ended_at=now_iso(),
        error=f"worker {worker or '(unknown)'} {why}",
        hint="the worker died or lost its machine; see its log, then run this again",
        counts=counts(store, run_id),
    )
    if done:
        log.warning("run %s failed: worker %s %s", run_id, worker, why)
    return done


def reap(store: Store, stale_after: float) -> list[str]:
    """Fail every run whose heartbeat is older than `stale_after` seconds."""
    failed = []
    for run_id, worker, state in store.stale_runs(time.time() - stale_after):
        why = f"stopped sending heartbeats for over {stale_after:g}s"
        if fail_run(store, run_id, worker, why, state):
            failed.append(run_id)
    return failed


class Reaper:
    """`reap` every quarter of `stale_after` on a thread, then `extra()` (e.g. RQ's own
    clean-up of abandoned jobs)."""

    def __init__(
        self, store: Store, stale_after: float, extra: Callable[[], object] | None = None
    ) -> None:
        self.store = store
        self.stale_after = stale_after
        self.extra = extra
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="reaper", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(max(0.5, self.stale_after / 4)):
            try:
                reap(self.store, self.stale_after)
                if self.extra is not None:
                    self.extra()
            except Exception:  # the database or Redis away for a moment: try again later
                log.exception("reaper sweep failed")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
