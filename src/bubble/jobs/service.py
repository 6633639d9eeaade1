"""`Jobs`: the orchestrator's one entry point -- submit, wait, shut down, recover.

Without a queue URL, runs execute on threads of this process (the embedded default);
with one, `submit` only queues them in Redis and `bubble worker`s execute them, and this
process merely reads the store (and fails runs whose worker stopped beating).
"""

from __future__ import annotations

import logging
import shlex
import time
from typing import Any

from bubble import events as ev
from bubble.errors import BubbleError, UsageError
from bubble.jobs import schema
from bubble.jobs.executor import Executor
from bubble.jobs.forward import Forwarder
from bubble.jobs.hub import Hub
from bubble.jobs.ingest import EventSink
from bubble.jobs.layout import Layout
from bubble.jobs.model import JobsConfig, RunRequest
from bubble.jobs.queue import RunQueue
from bubble.jobs.reaper import Reaper
from bubble.jobs.report import counts
from bubble.jobs.store import Store, new_id, now_iso
from bubble.jobs.uploads import Uploads

log = logging.getLogger("bubble.jobs")

IN_PROCESS = "in-process"  # the `worker` of runs executed by the web process itself


class UnknownUpload(BubbleError):
    """The run names an upload we do not have."""


def upgrade_hint(cfg: JobsConfig) -> str:
    where = f"--db-url '{cfg.db_url}'" if cfg.db_url else f"--data-dir '{cfg.data_dir}'"
    return f"bubble db upgrade {where}"


class Jobs:
    """Store, queue, executor, uploads and forwarding, wired together."""

    def __init__(self, cfg: JobsConfig) -> None:
        self.cfg = cfg
        self.layout = Layout(cfg.data_dir)
        self.store = Store(cfg.database_url, upgrade_hint(cfg))
        if self.store.is_sqlite and self.layout.database.exists():
            self.layout.database.chmod(0o600)
        self.hub = Hub()
        self.uploads = Uploads(self.store, cfg.max_upload)
        self.forwarder = Forwarder(cfg.api_url, self.layout.offline, self.store)
        self.executor: Executor | None = None
        self.queue: Any
        # Without in-process wake-ups, readers poll the store this often.
        self.poll = 0.2 if cfg.queue_url else 1.0
        if cfg.queue_url:
            from bubble.jobs.rqueue import RQQueue

            self.queue = RQQueue(cfg, self.store)
            self.reaper: Reaper | None = Reaper(self.store, cfg.stale_after, self.queue.cleanup)
        else:
            self.executor = Executor(
                cfg, self.store, self.hub, self.forwarder, self.layout.work, IN_PROCESS
            )
            self.reaper = None
            self.recover()
            self.queue = RunQueue(self.executor.run, cfg.workers, cfg.max_queue)

    # -- submit -------------------------------------------------------------------------
    def submit(self, req: RunRequest) -> dict[str, Any]:
        """Create the run (status `queued`) and queue it; returns the run row."""
        self.queue.check_room()
        run_id = new_id()
        argv = list(req.argv)
        if req.upload_id is not None:
            found = self.uploads.get(req.upload_id)
            if found is None:
                raise UnknownUpload(
                    f"there is no upload {req.upload_id!r}",
                    "upload the file first (POST /api/uploads) and pass the id it returns",
                )
            sample = found
            if not req.interpreter and not sample["executable"]:
                raise UsageError(
                    "the upload is neither an ELF binary nor a script with a #! line",
                    "give an interpreter, e.g. /bin/sh or python3",
                )
            argv = [*req.interpreter, "./" + Uploads.work_name(sample), *argv]
        else:
            sample = {"id": new_id(), "kind": "command", "name": argv[0][:200]}
            sample.update(executable=True, created_at=now_iso())
            self.store.add_sample(sample)
            self.forwarder.sample(sample)
        policy = req.policy.replace(timeout=req.timeout)
        row = {
            "id": run_id,
            "status": schema.QUEUED,
            "created_at": now_iso(),
            "command": argv,
            "command_line": req.command_line or shlex.join(argv),
            "policy": policy.to_mapping(),
            "timeout": req.timeout,
            "sample_id": sample["id"],
            "upload_id": req.upload_id,
            "timed_out": False,
            "last_seq": 0,
        }
        self.store.create_run(row)
        self.forwarder.run_started(row)
        self.queue.put(run_id, req.timeout + self.cfg.kill_margin)
        return row

    def wait(self, run_id: str, timeout: float) -> str | None:
        """Block until the run is terminal (or `timeout`); returns its status."""
        deadline = time.monotonic() + timeout
        while True:
            version = self.hub.version(run_id)
            state = self.store.run_state(run_id)
            if state is None or state[0] in schema.TERMINAL:
                return state[0] if state else None
            left = deadline - time.monotonic()
            if left <= 0:
                return state[0]
            self.hub.wait(run_id, version, min(left, self.poll))

    # -- lifecycle ------------------------------------------------------------------------
    def recover(self) -> None:
        """In-process only: runs left queued or running by a previous process (a crash)
        are interrupted. (With a queue, workers own them and the reaper watches them.)"""
        for run_id in self.store.runs_in_flight():
            self._interrupt(run_id, "the server stopped while the run was in flight")

    def cancel(self, run_id: str) -> str | None:
        """Ask a run to stop; returns its status now (None: no such run).

        A queued run is cancelled at once (no worker has it). A running one moves to
        `cancelling` in the store -- the request any worker executing it polls for -- and
        the watch of a run executing in this process is woken to kill its tree now.
        """
        why = "a user cancelled the run before it started"
        if self.store.set_status_if(run_id, schema.QUEUED, status=schema.CANCELLING):
            self._end_unstarted(run_id, schema.CANCELLED, "orchestrator.cancelled", why)
        elif self.store.set_status_if(run_id, schema.RUNNING, status=schema.CANCELLING):
            self.hub.publish(run_id)
            if self.executor is not None:
                self.executor.runner.cancel(run_id)
        state = self.store.run_state(run_id)
        return state[0] if state else None

    def _interrupt(self, run_id: str, why: str) -> None:
        self._end_unstarted(run_id, schema.INTERRUPTED, "orchestrator.interrupted", why)

    def _end_unstarted(self, run_id: str, status: str, action: str, why: str) -> None:
        """End a run no launcher is executing: one `sandbox.msg` saying why, then `status`."""
        state = self.store.run_state(run_id)
        if state is not None:
            sink = EventSink(self.store, self.hub, run_id)
            sink.seq = state[1]
            sink.add([ev.as_dict(ev.Msg(action=action, message=why))])
        self.store.update_run(
            run_id,
            status=status,
            ended_at=now_iso(),
            error=why,
            hint="run it again",
            counts=counts(self.store, run_id),
        )
        self.hub.publish(run_id)

    def shutdown(self) -> None:
        """Stop: kill runs in flight here (their threads record them) and drain the queue."""
        if self.executor is not None:
            self.executor.kill_all()
            self.executor.runner.close()
        if self.reaper is not None:
            self.reaper.stop()
        self.queue.close()
        self.forwarder.close()
        self.store.close()
        self.layout.close()
