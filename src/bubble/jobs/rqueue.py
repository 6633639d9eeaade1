"""The shared queue: each run is an RQ job in Redis, executed by a `bubble worker`.

The job carries only the run id: the run row in the shared store is the whole job
(command, policy, limits, upload id). RQ's own abandoned-job handling (a started job whose
worker stopped beating is moved to the failed registry, calling the job's failure
callback) backs up our store heartbeats (`reaper.py`), which are much faster: RQ only
gives up on a job after its timeout plus a minute.

redis and rq are imported here only, so the embedded default needs neither.
"""

from __future__ import annotations

import logging
from typing import Any

from bubble.jobs import schema
from bubble.jobs.model import JobsConfig
from bubble.jobs.queue import QueueFull
from bubble.jobs.reaper import fail_run
from bubble.jobs.store import Store

log = logging.getLogger("bubble.jobs")

QUEUE_NAME = "bubble"
JOB_SLACK = 120  # seconds a job may take beyond its run's limit (upload, drops, counts)

# Set in each process that executes or watches jobs (a worker, the web server).
_executor: Any = None
_store: Store | None = None


def execute(run_id: str) -> None:
    """The job function, called by RQ in a worker process."""
    if _executor is None:
        raise RuntimeError("bubble.jobs.rqueue.execute runs only inside `bubble worker`")
    _executor.run(run_id)


def on_failure(job: Any, _connection: Any, exc_type: Any, exc: Any, _tb: Any) -> None:
    """RQ's failure callback: the job raised, timed out, or was found abandoned."""
    if _store is None or not job.args:
        return
    run_id = job.args[0]
    why = f"abandoned the run ({getattr(exc_type, '__name__', exc_type)}: {exc})"
    for state in (schema.RUNNING, schema.CANCELLING, schema.QUEUED):
        if fail_run(_store, run_id, job.worker_name, why, state):
            return


def connect(url: str) -> Any:
    """A Redis client for `url`, checked now so a wrong URL fails at start-up."""
    from redis import Redis
    from redis.exceptions import RedisError

    from bubble.errors import UsageError

    client = Redis.from_url(url)
    try:
        client.ping()
    except RedisError as err:
        raise UsageError(
            f"cannot reach the queue at {url.split('@')[-1]}: {err}",
            "start Redis or fix --queue-url (redis://host:port/db)",
        ) from None
    return client


def cleanup(queue: Any) -> None:
    """RQ's abandoned-job handling, now (RQ workers do it only every few minutes)."""
    from rq.registry import StartedJobRegistry

    StartedJobRegistry(queue=queue).cleanup()


class RQQueue:
    """`RunQueue`'s interface over an RQ queue."""

    def __init__(self, cfg: JobsConfig, store: Store) -> None:
        from rq import Queue

        global _store
        _store = store
        self.redis = connect(str(cfg.queue_url))
        self.rq = Queue(QUEUE_NAME, connection=self.redis)
        self.max_waiting = cfg.max_queue

    def depth(self) -> int:
        return int(self.rq.count)

    def check_room(self) -> None:
        waiting = self.depth()
        if waiting >= self.max_waiting:
            raise QueueFull(
                f"{waiting} runs are already waiting",
                "wait for some to finish, add workers, or raise the server's queue limit",
            )

    def put(self, run_id: str, timeout: float) -> None:
        from rq import Callback

        self.rq.enqueue(
            execute,
            run_id,
            job_id=run_id,
            job_timeout=int(timeout) + JOB_SLACK,
            result_ttl=600,
            failure_ttl=86400,
            on_failure=Callback(on_failure),
        )

    def cleanup(self) -> None:
        cleanup(self.rq)

    def close(self) -> None:
        self.redis.close()
