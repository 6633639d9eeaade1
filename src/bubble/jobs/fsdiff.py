"""Dropped and modified files: the run's working directory scanned before and after.

The target may leave anything behind when FS writes are allowed -- symlinks to host files,
FIFOs, huge files -- so the scan never follows a link, opens only regular files (and
re-checks what it opened), and bounds both the number of entries and the bytes copied.
Dropped files are copied into the run folder, so a download serves our copy, not a path
the target could still change.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bubble.filekind import kind as _kind

MAX_ENTRIES = 20_000
MAX_COPY_FILE = 64 << 20
MAX_COPY_TOTAL = 256 << 20


@dataclass(frozen=True, slots=True)
class Entry:
    kind: str  # file | dir | symlink | other
    size: int
    mtime_ns: int
    ino: int


Snapshot = dict[str, Entry]


def snapshot(root: Path, limit: int = MAX_ENTRIES) -> Snapshot:
    """Every entry under `root` (relative POSIX paths), without following links."""
    out: Snapshot = {}
    stack = [""]
    while stack and len(out) < limit:
        rel_dir = stack.pop()
        try:
            with os.scandir(root / rel_dir if rel_dir else root) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue  # unreadable or vanished: nothing to report inside it
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            kind = _kind(st.st_mode)
            out[rel] = Entry(kind, st.st_size, st.st_mtime_ns, st.st_ino)
            if kind == "dir":
                stack.append(rel)
            if len(out) >= limit:
                break
    return out


@dataclass
class Changes:
    """What a run left behind: the seed's `files` (dropped) and `modified`, plus `deleted`."""

    files: list[dict[str, Any]] = field(default_factory=list)
    modified: list[dict[str, Any]] = field(default_factory=list)
    deleted: list[dict[str, Any]] = field(default_factory=list)
    copies: list[tuple[dict[str, Any], Path]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"files": self.files, "modified": self.modified, "deleted": self.deleted}


def _open_regular(path: Path) -> int | None:
    """An fd for `path` only if it is a regular file now (no link, FIFO or device)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def _hash_and_copy(fd: int, dest: Path | None, budget: int) -> tuple[str, int, bool]:
    """sha256 of the whole file; copy at most `budget` bytes into `dest`."""
    digest = hashlib.sha256()
    size = 0
    out = open(dest, "wb") if dest is not None else None  # noqa: SIM115
    try:
        while chunk := os.read(fd, 1 << 20):
            digest.update(chunk)
            size += len(chunk)
            if out is not None and size > budget:
                out.close()
                out = None
                assert dest is not None
                dest.unlink()
            elif out is not None:
                out.write(chunk)
    finally:
        if out is not None:
            out.close()
    return digest.hexdigest(), size, dest is not None and size <= budget


def diff(root: Path, before: Snapshot, copy_dir: Path, copy_name: Any) -> Changes:
    """Compare `root` now with `before`. Dropped regular files are hashed and copied into
    `copy_dir` under the name `copy_name()` returns (never a name the target chose)."""
    after = snapshot(root)
    changes = Changes()
    copied = 0
    for rel, now in after.items():
        old = before.get(rel)
        if old is not None and old.kind == now.kind:
            if now.kind == "file" and (old.size, old.mtime_ns, old.ino) != (
                now.size,
                now.mtime_ns,
                now.ino,
            ):
                item = {"name": rel, "kind": "file", "size_before": old.size}
                item.update(size_after=now.size, mtime_before_ns=old.mtime_ns)
                item["mtime_after_ns"] = now.mtime_ns
                fd = _open_regular(root / rel)
                if fd is not None:
                    try:
                        item["sha256"] = _hash_and_copy(fd, None, 0)[0]
                    finally:
                        os.close(fd)
                changes.modified.append(item)
            continue
        item = {"name": rel, "kind": now.kind, "size": now.size}
        if now.kind == "symlink":
            try:
                item["target"] = os.readlink(root / rel)
            except OSError:
                item["target"] = None
        elif now.kind == "file":
            fd = _open_regular(root / rel)
            if fd is not None:
                copy_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
                dest = copy_dir / copy_name()
                budget = min(MAX_COPY_FILE, MAX_COPY_TOTAL - copied)
                try:
                    sha, size, kept = _hash_and_copy(fd, dest, budget)
                finally:
                    os.close(fd)
                item.update(size=size, sha256=sha)
                if kept:
                    copied += size
                    changes.copies.append((item, dest))
        changes.files.append(item)
    for rel, old in before.items():
        if rel not in after:
            changes.deleted.append({"name": rel, "kind": old.kind, "size": old.size})
    return changes


def sha256_file(path: Path) -> str:
    """sha256 of a file we wrote ourselves."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
