"""Execute one run from its record alone: the unit of work of every queue.

The run row is the whole job (command, policy, limits, upload id). Whoever executes it --
a thread of the web process, or a `bubble worker` on another machine -- claims it, builds a
working directory on *its* machine, fetches the upload from the store, runs the launcher
(`python -m bubble run --events-fd N ...`, see `runner.py`) and writes events, output,
dropped files, artifacts and the final state back into the store. While it runs, a
heartbeat moves `runs.heartbeat_at`, so a run whose executor died is found and failed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import socket
import threading
from pathlib import Path
from typing import Any

from bubble import events as ev
from bubble.jobs import fsdiff, layerdrops, schema
from bubble.jobs.forward import Forwarder
from bubble.jobs.hub import Hub
from bubble.jobs.layout import make_work_dir
from bubble.jobs.model import JobsConfig
from bubble.jobs.report import counts
from bubble.jobs.runner import CAPTURES, Runner, RunResult, orchestrator_notes
from bubble.jobs.store import EXECUTING, Store, new_id, now_iso
from bubble.jobs.uploads import Uploads
from bubble.policy import Policy

log = logging.getLogger("bubble.jobs")
# --net-sim names each capture by the artifact id its net.capture event gives.
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def default_worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Executor:
    """Runs claimed runs; `kill_all()` stops those in flight (shutdown)."""

    def __init__(
        self,
        cfg: JobsConfig,
        store: Store,
        hub: Hub,
        forwarder: Forwarder,
        work_root: Path,
        name: str,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.hub = hub
        self.forwarder = forwarder
        self.work_root = work_root
        self.name = name
        self.runner = Runner(cfg, store, hub)
        self.closing = False

    def kill_all(self) -> None:
        self.closing = True
        self.runner.kill_all()

    def run(self, run_id: str) -> None:
        """Execute `run_id` if it is still queued (and nobody else took it)."""
        if self.closing:
            self.store.set_status_if(
                run_id,
                schema.QUEUED,
                status=schema.INTERRUPTED,
                ended_at=now_iso(),
                error="the server stopped before the run could start",
                hint="run it again",
            )
            return
        if not self.store.claim_run(run_id, self.name):
            log.info("run %s is not queued any more; skipped", run_id)
            return
        self.hub.publish(run_id)
        run = self.store.get_run(run_id)
        assert run is not None
        known = Policy.__dataclass_fields__  # a row from an older Bubble may have more
        policy = Policy.from_mapping({k: v for k, v in run["policy"].items() if k in known})
        workdir = self.work_root / run_id
        # This machine's folder for what the launcher leaves beside the run (dropped-file
        # copies, the layer's copies, --net-sim captures): stored, then removed.
        scratch = self.work_root / f".{run_id}.scratch"
        if policy.fs_overlay is not None:
            policy = policy.replace(fs_overlay=layerdrops.overlay_dir(scratch))
        beat = threading.Event()
        beater = threading.Thread(target=self._beat, args=(run_id, beat), daemon=True)
        beater.start()
        try:
            self._prepare(run, policy, workdir)
            self._execute(run, policy, workdir, scratch)
        except Exception as err:  # recorded on the run: it must not stay "running"
            log.exception("run %s could not be executed", run_id)
            self._end(
                run_id,
                status=schema.FAILED,
                ended_at=now_iso(),
                error=f"{self.name}: {err}",
                hint="see the log of that worker",
            )
        finally:
            beat.set()
            beater.join()
            shutil.rmtree(workdir, ignore_errors=True)
            shutil.rmtree(scratch, ignore_errors=True)
            self.hub.publish(run_id)
            self.hub.forget(run_id)
            self.forwarder.run_finished(run_id, lambda off: self._set_offline(run_id, off))

    def _end(self, run_id: str, **final: Any) -> bool:
        """Record the end of a run this executor holds (running, or cancelling: the
        runner's watch polls for that); False if a reaper ended it meanwhile."""
        return any(self.store.set_status_if(run_id, state, **final) for state in EXECUTING)

    def _beat(self, run_id: str, stop: threading.Event) -> None:
        while not stop.wait(self.cfg.heartbeat):
            try:
                self.store.heartbeat(run_id)
            except Exception:  # a database hiccup: the next beat may get through
                log.exception("run %s: heartbeat failed", run_id)

    def _prepare(self, run: dict[str, Any], policy: Policy, workdir: Path) -> None:
        """The working directory on this machine, with the upload fetched from the store."""
        others = not policy.deny_fs and os.geteuid() == 0 and not policy.keep_root
        make_work_dir(workdir, writable_by_others=others)
        if run["upload_id"] is None:
            return
        sample = self.store.get_sample(run["upload_id"])
        data = self.store.get_blob(run["upload_id"])
        if sample is None or data is None:
            raise FileNotFoundError(f"upload {run['upload_id']} is not in the store")
        dest = workdir / Uploads.work_name(sample)
        with open(dest, "xb") as out:
            out.write(data)
        os.chmod(dest, 0o755)

    def _execute(self, run: dict[str, Any], policy: Policy, workdir: Path, scratch: Path) -> None:
        run_id = run["id"]
        scratch.mkdir(mode=0o700, exist_ok=True)
        before = fsdiff.snapshot(workdir)
        result = self.runner.execute(run_id, run["command"], policy, workdir, scratch)
        sink = result.sink
        arts: list[dict[str, Any]] = []
        changes = fsdiff.diff(workdir, before, scratch / "drops", new_id)
        extra = orchestrator_notes(result, run["timeout"])
        if changes.files or changes.modified or changes.deleted:
            drop = ev.Drop(cwd=str(workdir), count=len(changes.files), **changes.as_dict())
            extra.append(ev.as_dict(drop))
        for item, path in changes.copies:
            item["artifact_id"] = path.name
            arts.append(self._store_file(run_id, path.name, "dropped", item["name"], path))
        fs_changes: dict[str, Any] = changes.as_dict()
        if policy.fs_overlay is not None and result.complete:
            layer = layerdrops.collect(self.store, run_id, Path(policy.fs_overlay))
            fs_changes = {k: v + layer.changes[k] for k, v in fs_changes.items()}
            for item, path in layer.copies:  # named by their paths: ids are new
                item["artifact_id"] = new_id()
                arts.append(
                    self._store_file(run_id, item["artifact_id"], "dropped", item["name"], path)
                )
            if layer.not_kept:
                why = f"{layer.not_kept} changed files were over the size caps and were not kept"
                extra.append(ev.as_dict(ev.Msg(action="orchestrator.drops_capped", message=why)))
        if result.complete:
            sink.add(extra)
        arts.extend(self._captures(run_id, scratch / CAPTURES))
        arts.extend(_stream_artifacts(run_id, result))
        self.store.add_artifacts(arts)
        final = result.outcome()
        final.update(fs_changes=fs_changes, counts=counts(self.store, run_id))
        if self.closing and not sink.exit_event:
            final.update(status=schema.INTERRUPTED, error="the server stopped during the run")
            final["hint"] = "run it again"
        if not self._end(run_id, **final):
            log.warning("run %s was ended by someone else (stale heartbeat?)", run_id)

    def _store_file(
        self, run_id: str, art_id: str, kind: str, name: str, path: Path
    ) -> dict[str, Any]:
        """A file of the scratch folder (a dropped file's copy within the caps, a capture)
        into the store, as artifact `art_id`."""
        data = path.read_bytes()
        self.store.put_blob(art_id, data)
        path.unlink()
        return _artifact(run_id, art_id, kind, name, len(data), hashlib.sha256(data).hexdigest())

    def _captures(self, run_id: str, folder: Path) -> list[dict[str, Any]]:
        """--net-sim payloads, each named by the artifact id its net.capture event gives."""
        if not folder.is_dir():
            return []
        return [
            self._store_file(run_id, path.name, "capture", f"capture {path.name[:8]}", path)
            for path in sorted(folder.iterdir())
            if path.is_file() and not path.is_symlink() and _UUID.match(path.name)
        ]

    def _set_offline(self, run_id: str, offline: bool) -> None:
        self.store.update_run(run_id, offline=offline)


def _stream_artifacts(run_id: str, result: RunResult) -> list[dict[str, Any]]:
    """stdout, stderr and the events as artifacts: their content is the store's output and
    events rows, so only size and digest are recorded here."""
    out = [
        _artifact(run_id, new_id(), p.stream, f"{p.stream}.txt", p.kept, p.digest.hexdigest())
        for p in (result.stdout, result.stderr)
    ]
    sink = result.sink
    out.append(
        _artifact(run_id, new_id(), "events", "events.ndjson", sink.bytes, sink.digest.hexdigest())
    )
    return out


def _artifact(
    run_id: str, art_id: str, kind: str, name: str, size: int, sha: str
) -> dict[str, Any]:
    return {
        "id": art_id,
        "run_id": run_id,
        "kind": kind,
        "name": name,
        "path": None,
        "size": size,
        "sha256": sha,
        "created_at": now_iso(),
    }
