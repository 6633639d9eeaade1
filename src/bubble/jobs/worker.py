"""`bubble worker`: execute queued runs from Redis (RQ), writing everything to the store.

One RQ `SimpleWorker` per process executes one run at a time in its main thread, so the
launcher's parent-death signal is tied to the worker's life: kill the worker and its run's
target dies with it. `--concurrency K` starts K such processes (each dies with this one).
SIGTERM (or Ctrl-C) is a warm shutdown: the runs in progress finish, then the workers exit;
a second SIGTERM is a cold one (RQ's semantics), and the runs are then failed by a reaper.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
from types import FrameType
from typing import Any

from bubble.errors import UsageError
from bubble.jobs import rqueue, settings
from bubble.jobs.executor import Executor, default_worker_name
from bubble.jobs.forward import Forwarder
from bubble.jobs.hub import Hub
from bubble.jobs.layout import Layout
from bubble.jobs.model import JobsConfig
from bubble.jobs.reaper import Reaper
from bubble.jobs.runner import die_with_parent
from bubble.jobs.service import upgrade_hint
from bubble.jobs.store import Store

log = logging.getLogger("bubble.worker")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bubble worker", description="Execute queued Bubble runs (Redis + RQ)."
    )
    settings.add_arguments(p, settings.WORKER)
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    values = settings.resolve(vars(args))
    if not values["queue_url"]:
        raise UsageError(
            "a worker needs a queue", "pass --queue-url redis://HOST:6379/0 (or BUBBLE_QUEUE_URL)"
        )
    if values["concurrency"] < 1:
        raise UsageError("--concurrency must be at least 1", "e.g. --concurrency 2")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    name = values["name"] or default_worker_name()
    if values["concurrency"] > 1:
        return _supervise(argv, name, values["concurrency"])
    return _work(values, name)


def _work(values: dict[str, Any], name: str) -> int:
    from rq import Queue, SimpleWorker

    cfg = JobsConfig.from_settings(values, worker_name=name)
    store = Store(cfg.database_url, upgrade_hint(cfg))
    redis = rqueue.connect(str(cfg.queue_url))
    layout = Layout(cfg.data_dir)
    forwarder = Forwarder(cfg.api_url, layout.offline, store)
    rqueue._executor = executor = Executor(cfg, store, Hub(), forwarder, layout.work, name)
    rqueue._store = store
    queue = Queue(rqueue.QUEUE_NAME, connection=redis)
    reaper = Reaper(store, cfg.stale_after, lambda: rqueue.cleanup(queue))
    worker = SimpleWorker([queue], connection=redis, name=name)
    shown = store.engine.url.render_as_string(hide_password=True)
    print(f"bubble: worker {name} ready (store {shown})", flush=True)
    try:
        worker.work(with_scheduler=False, logging_level="WARNING")
    finally:
        reaper.stop()
        executor.runner.close()  # its fork server
        forwarder.close()
        store.close()
        layout.close()
        print(f"bubble: worker {name} stopped", file=sys.stderr, flush=True)
    return 0


def _supervise(argv: list[str], name: str, k: int) -> int:
    """K single-run workers as child processes, named NAME/1..NAME/K."""
    base = _drop_values(argv, ("--concurrency", "--name"))
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "bubble", "worker", *base, "--name", f"{name}/{i}"],
            preexec_fn=die_with_parent(os.getpid()),
        )
        for i in range(1, k + 1)
    ]

    def forward(signo: int, _frame: FrameType | None) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signo)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    return max(child.wait() for child in children)


def _drop_values(argv: list[str], flags: tuple[str, ...]) -> list[str]:
    """argv without `flags` and their values (`--flag V` or `--flag=V`)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in flags:
            skip = True
            continue
        if arg.split("=", 1)[0] in flags:
            continue
        out.append(arg)
    return out
