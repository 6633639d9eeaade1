"""What kind of file a stat mode names, as events and reports spell it (a leaf: the sandbox's
layer scan and the orchestrator's working-directory diff both use it)."""

from __future__ import annotations

import stat


def kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"
