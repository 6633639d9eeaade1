"""The end of an --fs-overlay run: one `fs.drop` event per change in the layer, the copies
`--fs-overlay=DIR` asks for, the kept layer (`--keep-layer`), and a note when the layer filled
up (`--max-layer`: the writes beyond it failed with ENOSPC)."""

from __future__ import annotations

import os

from bubble import events
from bubble.policy import Policy
from bubble.sandbox import layerscan
from bubble.sandbox.overlay import Layout

FULL_SLACK = 64 << 10  # bytes free at most when we call the layer full: tmpfs rounds to pages


def report(
    writer: events.EventWriter, layer_fd: int, layout: Layout, policy: Policy, pid: int
) -> str | None:
    """Emit the layer's changes; returns "layer" if the layer filled up, else None."""
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
    for change in layerscan.scan(top, layout):
        copy = None
        digest = None
        if change.kind == "file" and change.source is not None:
            digest = layerscan.sha256(change.source)
            if dest:
                copy = layerscan.copy_out(change, os.path.realpath(dest))
        writer.emit(
            events.Drop(
                path=change.path,
                change=change.change,
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
