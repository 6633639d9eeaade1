"""`Jobs`: the orchestrator's one entry point -- submit, wait, shut down, recover."""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import time
from pathlib import Path
from typing import Any

from bubble import events as ev
from bubble.errors import BubbleError, UsageError
from bubble.jobs import fsdiff, layerdrops, schema
from bubble.jobs.forward import Forwarder
from bubble.jobs.hub import Hub
from bubble.jobs.ingest import EventSink
from bubble.jobs.layout import Layout
from bubble.jobs.model import JobsConfig, RunRequest
from bubble.jobs.queue import RunQueue
from bubble.jobs.report import counts
from bubble.jobs.runner import CAPTURES, Runner, orchestrator_notes
from bubble.jobs.store import Store, new_id, now_iso
from bubble.jobs.uploads import Uploads
from bubble.policy import Policy

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
log = logging.getLogger("bubble.jobs")


class UnknownUpload(BubbleError):
    """The run names an upload we do not have."""


class Jobs:
    """Store, queue, runner, uploads and forwarding, wired together."""

    def __init__(self, cfg: JobsConfig) -> None:
        self.cfg = cfg
        self.layout = Layout(cfg.data_dir)
        self.store = Store(cfg.database_url)
        if self.store.is_sqlite and self.layout.database.exists():
            os.chmod(self.layout.database, 0o600)
        self.hub = Hub()
        self.uploads = Uploads(self.layout.uploads, self.store, cfg.max_upload)
        self.forwarder = Forwarder(cfg.api_url, self.layout.offline, self.store)
        self.runner = Runner(cfg, self.store, self.hub)
        self.work_root = self.layout.work
        self._closing = False
        self.recover()
        self.queue = RunQueue(self._work, cfg.workers, cfg.max_queue)

    def run_dir(self, run_id: str) -> Path:
        return self.layout.run_dir(run_id)

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
        if policy.fs_overlay is not None:  # the layer's copies go to the run folder
            policy = policy.replace(fs_overlay=layerdrops.overlay_dir(self.run_dir(run_id)))
        try:
            self._prepare(run_id, policy, req.upload_id, sample)
        except OSError:
            # Nothing half-made stays behind: no folders without a run.
            shutil.rmtree(self.run_dir(run_id), ignore_errors=True)
            shutil.rmtree(self.layout.work_dir(run_id), ignore_errors=True)
            raise
        row = {
            "id": run_id,
            "status": schema.QUEUED,
            "created_at": now_iso(),
            "command": argv,
            "command_line": req.command_line or shlex.join(argv),
            "policy": _policy_dict(policy),
            "timeout": req.timeout,
            "sample_id": sample["id"],
            "upload_id": req.upload_id,
            "timed_out": False,
            "last_seq": 0,
        }
        self.store.create_run(row)
        self.forwarder.run_started(row)
        self.queue.put(run_id)
        return row

    def _prepare(
        self, run_id: str, policy: Policy, upload_id: str | None, sample: dict[str, Any]
    ) -> None:
        """The run folder and the working directory (with the upload copied in)."""
        self.run_dir(run_id).mkdir(mode=0o700)
        others = not policy.deny_fs and os.geteuid() == 0 and not policy.keep_root
        workdir = self.layout.make_work_dir(run_id, writable_by_others=others)
        if upload_id is not None:
            dest = workdir / Uploads.work_name(sample)
            shutil.copyfile(self.uploads.path_of(upload_id), dest)
            os.chmod(dest, 0o755)

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
            self.hub.wait(run_id, version, min(left, 1.0))

    # -- execute (worker threads) ---------------------------------------------------------
    def _work(self, run_id: str) -> None:
        run = self.store.get_run(run_id)
        if run is None or run["status"] != schema.QUEUED:
            return
        if self._closing:
            self._interrupt(run_id, "the server stopped before the run could start")
            return
        workdir = self.layout.work_dir(run_id)
        if not self.store.set_status_if(
            run_id, schema.QUEUED, status=schema.RUNNING, started_at=now_iso()
        ):
            return  # cancelled while it waited
        self.hub.publish(run_id)
        known = Policy.__dataclass_fields__
        policy = Policy(**{k: v for k, v in run["policy"].items() if k in known})
        try:
            self._execute(run, policy, workdir)
        except Exception as err:  # recorded on the run: it must not stay "running"
            log.exception("run %s could not be executed", run_id)
            self.store.update_run(
                run_id,
                status=schema.FAILED,
                ended_at=now_iso(),
                error=str(err),
                hint="see the server log",
            )
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            self.hub.publish(run_id)
            self.hub.forget(run_id)
            self.forwarder.run_finished(run_id, lambda off: self._set_offline(run_id, off))

    def _execute(self, run: dict[str, Any], policy: Policy, workdir: Path) -> None:
        run_id = run["id"]
        rundir = self.run_dir(run_id)
        before = fsdiff.snapshot(workdir)
        result = self.runner.execute(run_id, run["command"], policy, workdir, rundir)
        sink = result.sink
        try:
            arts: list[dict[str, Any]] = []
            changes = fsdiff.diff(workdir, before, rundir / "drops", new_id)
            extra = orchestrator_notes(result, run["timeout"])
            if changes.files or changes.modified or changes.deleted:
                extra.append(
                    {"type": ev.FS_DROP, "cwd": str(workdir), "count": len(changes.files)}
                    | changes.as_dict()
                )
            for item, path in changes.copies:
                item["artifact_id"] = path.name
                arts.append(self._artifact(run_id, "dropped", item["name"], path, item["sha256"]))
            fs_changes: dict[str, Any] = changes.as_dict()
            if policy.fs_overlay is not None and result.complete:
                layer_changes, layer_arts, not_kept = layerdrops.collect(
                    rundir, self.cfg.data_dir, run_id
                )
                fs_changes = {k: v + layer_changes[k] for k, v in fs_changes.items()}
                arts += layer_arts
                if not_kept:
                    extra.append(
                        {
                            "type": ev.MSG,
                            "action": "orchestrator.drops_capped",
                            "message": f"{not_kept} changed files were over the size caps "
                            "and were not kept",
                        }
                    )
            if result.complete:
                sink.add(extra)
        finally:
            sink.close()
        arts += self._captures(run_id, rundir / CAPTURES)
        for kind, name in (("stdout", "stdout.txt"), ("stderr", "stderr.txt")):
            arts.append(self._artifact(run_id, kind, name, rundir / name))
        arts.append(self._artifact(run_id, "events", "events.ndjson", rundir / "events.ndjson"))
        self.store.add_artifacts(arts)
        final = result.outcome(rundir / "stderr.txt")
        final.update(fs_changes=fs_changes, counts=counts(self.store, run_id))
        if self._closing and not sink.exit_event:
            final.update(status=schema.INTERRUPTED, error="the server stopped during the run")
            final["hint"] = "run it again"
        self.store.update_run(run_id, **final)

    def _captures(self, run_id: str, folder: Path) -> list[dict[str, Any]]:
        """--net-sim payloads, each named by the artifact id its net.capture event gives."""
        if not folder.is_dir():
            return []
        return [
            self._artifact(run_id, "capture", f"capture {path.name[:8]}", path)
            for path in sorted(folder.iterdir())
            if path.is_file() and not path.is_symlink() and _UUID.match(path.name)
        ]

    def _artifact(
        self, run_id: str, kind: str, name: str, path: Path, sha: str | None = None
    ) -> dict[str, Any]:
        path.touch(exist_ok=True)
        return {
            "id": path.name if kind in ("dropped", "capture") else new_id(),
            "run_id": run_id,
            "kind": kind,
            "name": name,
            "path": str(path.relative_to(self.cfg.data_dir)),
            "size": path.stat().st_size,
            "sha256": sha or fsdiff.sha256_file(path),
            "created_at": now_iso(),
        }

    def _set_offline(self, run_id: str, offline: bool) -> None:
        self.store.update_run(run_id, offline=offline)

    # -- lifecycle ------------------------------------------------------------------------
    def recover(self) -> None:
        """Runs left queued or running by a previous process (a crash) are interrupted."""
        for run_id in self.store.runs_in_flight():
            self._interrupt(run_id, "the server stopped while the run was in flight")
            shutil.rmtree(self.layout.work_dir(run_id), ignore_errors=True)

    def cancel(self, run_id: str) -> str | None:
        """Ask a run to stop; returns its status now (None: no such run).

        A queued run is cancelled at once (no worker has it). A running one moves to
        `cancelling` in the store -- the request any worker executing it polls for -- and
        the watch of a run executing in this process is woken to kill its tree now.
        """
        why = "a user cancelled the run before it started"
        if self.store.set_status_if(run_id, schema.QUEUED, status=schema.CANCELLING):
            self._end_unstarted(run_id, schema.CANCELLED, "orchestrator.cancelled", why)
            shutil.rmtree(self.layout.work_dir(run_id), ignore_errors=True)
        elif self.store.set_status_if(run_id, schema.RUNNING, status=schema.CANCELLING):
            self.hub.publish(run_id)
            self.runner.cancel(run_id)
        state = self.store.run_state(run_id)
        return state[0] if state else None

    def _interrupt(self, run_id: str, why: str) -> None:
        self._end_unstarted(run_id, schema.INTERRUPTED, "orchestrator.interrupted", why)

    def _end_unstarted(self, run_id: str, status: str, action: str, why: str) -> None:
        """End a run no launcher is executing: one `sandbox.msg` saying why, then `status`."""
        state = self.store.run_state(run_id)
        rundir = self.run_dir(run_id)
        if state is not None and rundir.is_dir():
            sink = EventSink(self.store, self.hub, run_id, rundir / "events.ndjson")
            sink.seq = state[1]
            try:
                sink.add([{"type": ev.MSG, "action": action, "message": why}])
            finally:
                sink.close()
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
        """Stop: kill runs in flight (their workers record them) and drain the queue."""
        self._closing = True
        self.runner.kill_all()
        self.queue.close()
        self.forwarder.close()
        self.store.close()
        self.layout.close()


def _policy_dict(policy: Policy) -> dict[str, Any]:
    return {name: getattr(policy, name) for name in Policy.__dataclass_fields__}
