"""What `--fs-overlay` builds, planned in the parent from the host's mount tree.

Every host directory without mounts below it becomes one overlay; directories with mounts
below are rebuilt entry by entry (their symlinks recreated, their regular files bound
read-only) and walked into. The parent keeps the plan: it says which upper directory stands
for which host path when the layer is read after the run (`layerscan`).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

# Bytes of layer without --max-layer: bounded, and a tmpfs only takes what is written.
DEFAULT_SIZE = 1 << 30
# Host devices a program needs; everything else in /dev (disks: /dev/vda here) stays out.
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
DEV_LINKS = {
    "fd": "/proc/self/fd",
    "stdin": "/proc/self/fd/0",
    "stdout": "/proc/self/fd/1",
    "stderr": "/proc/self/fd/2",
    "ptmx": "pts/ptmx",
}
PSEUDO = ("/proc", "/sys", "/dev")


@dataclass(frozen=True, slots=True)
class Layout:
    """What to build: overlays (host dir -> upper index), skeleton entries, bound files."""

    overlays: tuple[str, ...]  # host directories; upper of overlays[i] is u/i
    dirs: tuple[tuple[str, int], ...]  # (path, mode) rebuilt as plain directories
    links: tuple[tuple[str, str], ...]  # (path, target) symlinks rebuilt
    files: tuple[str, ...]  # regular files in rebuilt directories: bound read-only
    size: int


def _mount_points() -> list[str]:
    points = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as fh:
        for line in fh:
            raw = line.split(" ", 5)[4]
            # mountinfo escapes space, tab, newline and backslash as octal.
            points.append(
                raw.replace("\\040", " ")
                .replace("\\011", "\t")
                .replace("\\012", "\n")
                .replace("\\134", "\\")
            )
    return points


def plan(size: int | None) -> Layout:
    """The layout for this host's mount tree (read in the parent, before fork)."""
    mounts = [m for m in _mount_points() if not m.startswith(tuple(p + "/" for p in PSEUDO))]
    overlays: list[str] = []
    dirs: list[tuple[str, int]] = []
    links: list[tuple[str, str]] = []
    files: list[str] = []

    def walk(parent: str) -> None:
        try:
            names = sorted(os.listdir(parent or "/"))
        except OSError:
            return
        for name in names:
            path = f"{parent}/{name}"
            if path in PSEUDO:
                continue
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISLNK(st.st_mode):
                links.append((path, os.readlink(path)))
            elif stat.S_ISDIR(st.st_mode):
                if any(m.startswith(path + "/") for m in mounts):
                    dirs.append((path, stat.S_IMODE(st.st_mode)))
                    walk(path)  # mounts below: a layer of its own for each part
                else:
                    overlays.append(path)
            elif stat.S_ISREG(st.st_mode):
                files.append(path)

    walk("")
    return Layout(tuple(overlays), tuple(dirs), tuple(links), tuple(files), size or DEFAULT_SIZE)
