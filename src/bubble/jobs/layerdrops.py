"""A layered run's changes (`fs_write: "overlay"`) as the summary and the artifacts show them.

The launcher reports every change in the run's layer as an `fs.drop` event and copies changed
files into `runs/<id>/layer/<absolute path>` (`--fs-overlay=DIR`). Here those events become the
run's `fs_changes` (dropped, modified, deleted, with their real paths) and the copies become
`dropped` artifacts named by those paths -- within the same caps as working-directory drops;
copies beyond them are removed and counted, never served.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from bubble import events as ev
from bubble.jobs.fsdiff import MAX_COPY_FILE, MAX_COPY_TOTAL, sha256_file
from bubble.jobs.store import new_id, now_iso

LAYER_DIR = "layer"  # under the run folder


def drops(events_path: Path) -> list[dict[str, Any]]:
    """The launcher's `fs.drop` events of a run (those with a `change`), in order."""
    out = []
    with open(events_path, encoding="utf-8") as fh:
        for line in fh:
            if '"fs.drop"' not in line:
                continue
            obj = json.loads(line)
            if obj.get("type") == ev.FS_DROP and isinstance(obj.get("change"), str):
                out.append(obj)
    return out


def _our_copy(copy: Any, layer: Path) -> Path | None:
    """The launcher's copy, if it is a regular file inside the run's layer folder."""
    if not isinstance(copy, str):
        return None
    path = Path(copy)
    try:
        st = path.lstat()
        path.resolve().relative_to(layer.resolve())
    except (OSError, ValueError):
        return None
    return path if stat.S_ISREG(st.st_mode) else None


def collect(
    rundir: Path, data_dir: Path, run_id: str
) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]], int]:
    """(fs_changes, artifact rows, copies not kept) for a layered run."""
    layer = rundir / LAYER_DIR
    changes: dict[str, list[dict[str, Any]]] = {"files": [], "modified": [], "deleted": []}
    arts: list[dict[str, Any]] = []
    kept = dropped = 0
    for event in drops(rundir / "events.ndjson"):
        item = {k: event.get(k) for k in ("kind", "size", "sha256", "mode", "target", "path2")}
        item.update(name=event["path"], change=event["change"])
        copy = _our_copy(event.get("copy"), layer)
        if copy is not None:
            size = copy.stat().st_size
            if size > MAX_COPY_FILE or kept + size > MAX_COPY_TOTAL:
                copy.unlink()
                dropped += 1
            else:
                kept += size
                art_id = new_id()
                item["artifact_id"] = art_id
                arts.append(
                    {
                        "id": art_id,
                        "run_id": run_id,
                        "kind": "dropped",
                        "name": event["path"],  # display only; downloads are named by id
                        "path": str(copy.relative_to(data_dir)),
                        "size": size,
                        "sha256": sha256_file(copy),
                        "created_at": now_iso(),
                    }
                )
        if event["change"] in ("created", "renamed"):
            changes["files"].append(item)
        elif event["change"] == "deleted":
            changes["deleted"].append(item)
        else:
            item["size_after"] = item["size"]
            changes["modified"].append(item)
    return changes, arts, dropped


def overlay_dir(rundir: Path) -> str:
    """Where the launcher copies a layered run's changed files."""
    return os.fspath(rundir / LAYER_DIR)
