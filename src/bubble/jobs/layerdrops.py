"""A layered run's changes (`fs_write: "overlay"`) as the summary and the artifacts show them.

The launcher reports every change in the run's layer as an `fs.drop` event (the layer's shape:
one per path, with `change`) and copies changed files into `<scratch>/layer/<absolute path>`
(`--fs-overlay=DIR`). Here those events become the run's `fs_changes` (dropped, modified,
deleted, with their real paths) and the copies become `dropped` artifacts named by those paths
-- within the same caps as working-directory drops; copies beyond them are removed and
counted, never stored. The orchestrator's own `fs.drop` (the working directory's summary, no
`change`) is not one of them.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bubble import events as ev
from bubble.jobs.fsdiff import MAX_COPY_FILE, MAX_COPY_TOTAL
from bubble.jobs.store import Store

LAYER_DIR = "layer"  # under the executor's scratch folder


def drops(store: Store, run_id: str) -> list[dict[str, Any]]:
    """The launcher's `fs.drop` events of a run (those with a `change`), in order."""
    out = []
    for _seq, line in store.iter_events(run_id):
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


@dataclass
class LayerChanges:
    changes: dict[str, list[dict[str, Any]]]
    copies: list[tuple[dict[str, Any], Path]] = field(default_factory=list)  # (item, copy)
    not_kept: int = 0  # copies over the caps, removed


def collect(store: Store, run_id: str, layer: Path) -> LayerChanges:
    """The layer's changes as `fs_changes` lists, and the copies to store."""
    out = LayerChanges({"files": [], "modified": [], "deleted": []})
    kept = 0
    for event in drops(store, run_id):
        item = {k: event.get(k) for k in ("kind", "size", "sha256", "mode", "target", "path2")}
        item.update(name=event["path"], change=event["change"])
        copy = _our_copy(event.get("copy"), layer)
        if copy is not None:
            size = copy.stat().st_size
            if size > MAX_COPY_FILE or kept + size > MAX_COPY_TOTAL:
                copy.unlink()
                out.not_kept += 1
            else:
                kept += size
                out.copies.append((item, copy))
        if event["change"] in ("created", "renamed"):
            out.changes["files"].append(item)
        elif event["change"] == "deleted":
            out.changes["deleted"].append(item)
        else:
            item["size_after"] = item["size"]
            out.changes["modified"].append(item)
    return out


def overlay_dir(scratch: Path) -> str:
    """Where the launcher copies a layered run's changed files."""
    return os.fspath(scratch / LAYER_DIR)
