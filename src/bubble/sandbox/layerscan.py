"""What a run changed in its layer (--fs-overlay), read by the parent after the run.

The layer's tmpfs arrives as a descriptor (`overlay.enter` hands it over): `u/N` is the upper
directory of the overlay on host directory `layout.overlays[N]`, `root/` the rebuilt root
(where the target's writes to directories with mounts below them land). Every entry of an
upper directory is a change: a whiteout (character device 0/0) is a deletion, an opaque
directory replaced the host's, anything else is compared with the host file it covers. The
scan never follows a link, opens only regular files, and names every change by the absolute
path the target used, which is the host's path it shadows.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from bubble.filekind import kind as _kind
from bubble.sandbox.layerplan import DEV_LINKS, DEVICES, Layout

OPAQUE = "user.overlay.opaque"
MAX_GONE = 10_000  # entries reported under one deleted host directory


@dataclass(frozen=True, slots=True)
class Change:
    path: str  # absolute, as the target saw it
    change: str  # created | modified | deleted | metadata
    kind: str  # file | dir | symlink | other
    source: str | None  # our path of the layer's copy (None for deletions)
    size: int | None = None
    mode: int | None = None
    target: str | None = None


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:
        return None


def sha256(path: str) -> str | None:
    """sha256 of a regular file, or None if `path` is not one (or unreadable)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        import hashlib  # the first change pays for it, a run without changes never does

        digest = hashlib.sha256()
        while chunk := os.read(fd, 1 << 20):
            digest.update(chunk)
        return digest.hexdigest()
    except OSError:
        return None
    finally:
        os.close(fd)


def _same_content(a: str, b: str, size_a: int, size_b: int) -> bool:
    return size_a == size_b and sha256(a) == sha256(b)


def _entries(top: str) -> Iterator[tuple[str, os.stat_result]]:
    """(relative path, lstat) of everything below `top`, parents before children."""
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            names = sorted(os.listdir(f"{top}/{rel}" if rel else top), reverse=True)
        except OSError:
            continue
        for name in names:
            sub = f"{rel}/{name}" if rel else name
            st = _lstat(f"{top}/{sub}")
            if st is None:
                continue
            yield sub, st
            if stat.S_ISDIR(st.st_mode):
                stack.append(sub)


def _gone(path: str, st: os.stat_result) -> Iterator[Change]:
    """A deleted host path, and under a deleted directory everything it held (up to
    MAX_GONE entries: `rm -rf /usr` is one event per file, not a flood without end)."""
    yield Change(path, "deleted", _kind(st.st_mode), None, st.st_size)
    if stat.S_ISDIR(st.st_mode):
        for n, (rel, sub) in enumerate(_entries(path)):
            if n >= MAX_GONE:
                break
            yield Change(f"{path}/{rel}", "deleted", _kind(sub.st_mode), None, sub.st_size)


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _upper(upper: str, host_dir: str) -> Iterator[Change]:
    for rel, st in _entries(upper):
        path = f"{host_dir}/{rel}"
        mine = f"{upper}/{rel}"
        host = _lstat(path)
        kind = _kind(st.st_mode)
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:  # a whiteout
            if host is not None:
                yield from _gone(path, host)
            continue
        if host is None or _kind(host.st_mode) != kind:
            target = os.readlink(mine) if kind == "symlink" else None
            change = "created" if host is None else "modified"
            yield Change(path, change, kind, mine, st.st_size, mode, target)
            continue
        same_meta = (mode, st.st_uid, st.st_gid) == (
            stat.S_IMODE(host.st_mode),
            host.st_uid,
            host.st_gid,
        )
        if kind == "dir":
            if _opaque(mine):  # removed and made again: the host's entries are gone
                for name in sorted(os.listdir(path)):
                    gone = _lstat(f"{path}/{name}")
                    if _lstat(f"{mine}/{name}") is None and gone is not None:
                        yield from _gone(f"{path}/{name}", gone)
            if not same_meta:
                yield Change(path, "metadata", kind, mine, st.st_size, mode)
        elif kind == "symlink":
            target = os.readlink(mine)
            if target != os.readlink(path):
                yield Change(path, "modified", kind, mine, st.st_size, mode, target)
        elif kind == "file" and not _same_content(mine, path, st.st_size, host.st_size):
            yield Change(path, "modified", kind, mine, st.st_size, mode)
        elif not same_meta:
            yield Change(path, "metadata", kind, mine, st.st_size, mode)


def skeleton(layout: Layout) -> dict[str, bool]:
    """The rebuilt root's own entries: path -> whether its contents are ours to scan (a
    rebuilt directory) rather than a mount point (empty in the tmpfs once detached)."""
    paths = {p: False for p in layout.overlays}
    paths.update({p: True for p, _ in layout.dirs})
    paths.update({p: False for p, _ in layout.links})
    paths.update({p: False for p in layout.files})
    paths.update({"/proc": False, "/sys": False, "/dev": True, "/dev/pts": False})
    paths.update({"/dev/shm": True})
    paths.update({f"/dev/{name}": False for name in (*DEVICES, *DEV_LINKS)})
    return paths


def _root(root: str, layout: Layout) -> Iterator[Change]:
    """Changes to the rebuilt root itself: entries the target added, or removed."""
    ours = skeleton(layout)
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            names = sorted(os.listdir(root + rel), reverse=True)
        except OSError:
            continue
        for name in names:
            path = f"{rel}/{name}"
            st = _lstat(root + path)
            if st is None:
                continue
            if path in ours:
                if ours[path]:
                    stack.append(path)
                continue
            kind = _kind(st.st_mode)
            target = os.readlink(root + path) if kind == "symlink" else None
            mode = stat.S_IMODE(st.st_mode)
            yield Change(path, "created", kind, root + path, st.st_size, mode, target)
            if kind == "dir":
                stack.append(path)
    for path in ours:
        if _lstat(root + path) is None and _lstat(path) is not None:
            yield Change(path, "deleted", _kind(os.lstat(path).st_mode), None)


def scan(top: str, layout: Layout) -> list[Change]:
    """Every change in the layer at `top` (e.g. /proc/self/fd/N), sorted by path."""
    changes = list(_root(f"{top}/root", layout))
    for i, host_dir in enumerate(layout.overlays):
        changes.extend(_upper(f"{top}/u/{i}", host_dir))
    return sorted(changes, key=lambda c: c.path)


def copy_out(change: Change, dest_root: str) -> str | None:
    """Copy a created or modified regular file to `dest_root` + its absolute path; returns
    where, or None. Directories on the way are made by us; nothing is followed."""
    if change.kind != "file" or change.source is None or change.change == "metadata":
        return None
    dest = os.path.normpath(dest_root + change.path)
    if not dest.startswith(dest_root.rstrip("/") + "/"):
        return None
    os.makedirs(os.path.dirname(dest), mode=0o755, exist_ok=True)
    if os.path.realpath(os.path.dirname(dest)) != os.path.dirname(dest):
        return None  # a link on the way (a second run into the same DIR): not ours to follow
    try:
        src = os.open(change.source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(src).st_mode):
            return None
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        out = os.open(dest, flags, 0o600)
        try:
            while chunk := os.read(src, 1 << 20):
                os.write(out, chunk)
        finally:
            os.close(out)
    finally:
        os.close(src)
    return dest


def keep(top: str, layout: Layout, dest: str) -> None:
    """--keep-layer: the upper directories under `dest/upper/<host path>`, the rebuilt
    root's own entries under `dest/root`. Whiteouts (device nodes) are not copied: the
    fs.drop events list the deletions."""
    import shutil

    def ignore(directory: str, names: list[str]) -> list[str]:
        skip = []
        for name in names:
            st = _lstat(f"{directory}/{name}")
            if st is not None and _kind(st.st_mode) == "other":
                skip.append(name)
        return skip

    for i, host_dir in enumerate(layout.overlays):
        upper = f"{top}/u/{i}"
        if os.listdir(upper):
            shutil.copytree(upper, f"{dest}/upper{host_dir}", symlinks=True, ignore=ignore)
    shutil.copytree(f"{top}/root", f"{dest}/root", symlinks=True, ignore=ignore)
