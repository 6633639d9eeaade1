"""The end of an --fs-overlay run: one `fs.drop` event per change in the layer, the copies
`--fs-overlay=DIR` asks for, the kept layer (`--keep-layer`), and a note when the layer filled
up (`--max-layer`: the writes beyond it failed with ENOSPC)."""

from __future__ import annotations

import os

from bubble import events
from bubble.policy import Policy
from bubble.sandbox import layerscan
from bubble.sandbox.eventlog import EventWriter
from bubble.sandbox.layerplan import Layout

FULL_SLACK = 64 << 10  # bytes free at most when we call the layer full: tmpfs rounds to pages


def report(
    writer: EventWriter,
    layer_fd: int,
    layout: Layout,
    policy: Policy,
    pid: int,
    renames: dict[str, str] | None = None,
) -> str | None:
    """Emit the layer's changes; returns "layer" if the layer filled up, else None.
    `renames` (new -> old path, as the calls named them): a creation whose path was renamed
    from a path the layer shows deleted is reported once, as `renamed` with `path2`."""
    top = f"/proc/self/fd/{layer_fd}"
    limit = None
    vfs = os.fstatvfs(layer_fd)
    if vfs.f_bavail * vfs.f_frsize <= FULL_SLACK:
        limit = "layer"
        size = layout.size
        writer.emit(
            events.Msg(
                action="limit",
                message=f"the layer is full ({size} bytes, --max-layer): writes beyond it "
                "failed with ENOSPC",
                pid=pid,
            )
        )
    dest = policy.fs_overlay or None
    if dest:
        os.makedirs(dest, mode=0o700, exist_ok=True)
    changes = layerscan.scan(top, layout)
    deleted = {c.path for c in changes if c.change == "deleted"}
    moved = {
        c.path: old
        for c in changes
        if c.change == "created" and (old := (renames or {}).get(c.path)) in deleted
    }
    for change in changes:
        if change.change == "deleted" and change.path in moved.values():
            continue  # reported with its new name
        copy = None
        digest = None
        if change.kind == "file" and change.source is not None:
            digest = layerscan.sha256(change.source)
            if dest:
                copy = layerscan.copy_out(change, os.path.realpath(dest))
        writer.emit(
            events.Drop(
                path=change.path,
                change="renamed" if change.path in moved else change.change,
                path2=moved.get(change.path),
                kind=change.kind,
                size=change.size,
                sha256=digest,
                mode=change.mode,
                target=change.target,
                copy=copy,
                pid=pid,
            )
        )
    if policy.keep_layer:
        from bubble.sandbox.session import _private_dir

        kept = _private_dir(os.path.realpath(dest) if dest else "/tmp", "bubble-layer-")
        layerscan.keep(top, layout, kept)
        writer.emit(events.Msg(action="layer.kept", message=f"the layer is kept in {kept}"))
    return limit
