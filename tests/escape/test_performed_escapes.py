"""Calls the supervisor carries out for the target (to report their `result`) must never
reach what the target itself could not: under --fs-overlay every write stays in the layer.

The supervisor resolves paths from the target's root with RESOLVE_IN_ROOT: an absolute
symlink, `..` above the root, `/proc/self/root` (the supervisor's own, as /proc/self is
whoever reads it), a hard link to a host file, a dirfd of `/`, a descriptor onto a host
directory opened before the switch. Each is tried, and the host is checked from outside,
byte for byte; where the supervisor carried the call out, the event's `result` is checked too.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bubble.sandbox import resolve
from tests.conftest import AS_ROOT, Result, run_bubble

pytestmark = pytest.mark.skipif(not AS_ROOT, reason="needs root: host files owned by root")
OVERLAY = ["--fs-overlay"]
PY = "/usr/bin/python3"  # readable by every user, unlike the test's own interpreter


def state(path: Path) -> dict[str, tuple]:
    out = {}
    for p in [path, *sorted(path.rglob("*"))]:
        st = p.lstat()
        content = p.read_bytes() if p.is_file() and not p.is_symlink() else None
        out[str(p)] = (st.st_mode, st.st_uid, st.st_gid, st.st_nlink, content)
    return out


@pytest.fixture
def host() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="bubble-perf-host-", dir="/tmp"))
    os.chmod(path, 0o755)
    (path / "victim").mkdir()
    (path / "victim" / "f").write_bytes(b"keep\n")
    (path / "secret").write_bytes(b"host secret\n")
    os.chmod(path / "secret", 0o644)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def results(r: Result, syscall: str, path: str) -> list[object]:
    return [
        e.get("result", "<absent>")
        for e in r.of_type("fs.write")
        if e["syscall"] == syscall and e.get("path") == path
    ]


def test_absolute_symlink_in_the_layer_to_a_host_file(host: Path) -> None:
    before = state(host)
    script = (
        f"ln -s {host}/secret /tmp/l && echo pwn >> /tmp/l && chmod 777 /tmp/l; cat {host}/secret"
    )
    r = run_bubble(["/bin/sh", "-c", script], OVERLAY)
    assert r.stdout == "host secret\npwn\n", r.stderr
    assert results(r, "openat", "/tmp/l") == [0]  # performed, through the symlink, in the layer
    assert results(r, "fchmodat", "/tmp/l") == [0]
    assert state(host) == before


def test_dotdot_above_the_root_and_a_dirfd_of_root(host: Path) -> None:
    before = state(host)
    code = (
        "import os\n"
        f"open('/../../..{host}/dots', 'w').write('x')\n"
        "root = os.open('/', os.O_RDONLY | os.O_DIRECTORY)\n"
        f"os.close(os.open('{str(host)[1:]}/viaroot', os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=root))\n"
        f"os.mkdir('..{host}/viadir', dir_fd=root)\n"
        f"print(sorted(os.listdir('{host}')))\n"
    )
    r = run_bubble([PY, "-c", code], OVERLAY)
    assert r.stdout == "['dots', 'secret', 'viadir', 'viaroot', 'victim']\n", r.stderr
    assert results(r, "openat", f"{host}/viaroot") == [0]
    assert results(r, "mkdirat", f"{host}/viadir") == [0]
    assert state(host) == before


def test_proc_self_root_is_never_the_supervisors(host: Path) -> None:
    """/proc/self/root read by the supervisor would be the host's root: the supervisor
    refuses magic links, so the kernel runs these calls (in the target's layer)."""
    before = state(host)
    script = (
        f"echo a > /proc/self/root{host}/viaproc; echo b > /proc/1/root{host}/viainit; "
        f"mkdir /proc/self/root{host}/d; ls {host}"
    )
    r = run_bubble(["/bin/sh", "-c", script], OVERLAY)
    assert "viaproc" in r.stdout and "d\n" in r.stdout, r.stderr
    assert results(r, "openat", f"/proc/self/root{host}/viaproc") == ["<absent>"]
    assert results(r, "mkdir", f"/proc/self/root{host}/d") == ["<absent>"]
    assert state(host) == before


def test_hard_link_to_a_host_file(host: Path) -> None:
    before = state(host)
    script = f"ln {host}/secret {host}/hl && echo pwn >> {host}/hl; rm {host}/secret; ls {host}"
    r = run_bubble(["/bin/sh", "-c", script], OVERLAY)
    assert r.stdout == "hl\nvictim\n", r.stderr
    assert results(r, "linkat", f"{host}/secret") == [0]
    assert results(r, "unlinkat", f"{host}/secret") == [0]
    assert state(host) == before


@contextlib.contextmanager
def chrooted(jail: Path, keep: Path | None = None) -> Iterator[tuple[int, int, int]]:
    """A process of ours chrooted into `jail` (holding a descriptor onto `keep`, opened
    before): (its pid, that descriptor's number or -1, our descriptor on its root)."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            fd = os.open(keep, os.O_RDONLY | os.O_DIRECTORY) if keep else -1
            os.chroot(jail)
            os.chdir("/")
            os.write(ready_w, str(fd).encode())
            time.sleep(30)
        finally:
            os._exit(0)
    try:
        os.close(ready_w)
        fd = int(os.read(ready_r, 16))
        root = resolve.root_of(pid)
        try:
            yield pid, fd, root
        finally:
            os.close(root)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(ready_r)


def test_descriptor_outside_the_callers_root_is_never_used(host: Path) -> None:
    """A descriptor onto a directory outside the caller's root (bubble itself cannot start
    with a directory on 0-2, the only descriptors a target inherits, so a chrooted process
    of ours plays the caller): readlink prints a path that also exists inside the root, but
    it is not the same directory, so the supervisor refuses to name anything from it, while
    the caller's own cwd inside the root is named from the root."""
    jail = host / "jail"
    (jail / str(host)[1:]).mkdir(parents=True)  # the same path, inside the root: a decoy
    with chrooted(jail, keep=host) as (pid, fd, root):
        with pytest.raises(resolve.Inexact):
            resolve.rooted(pid, root, fd, b"made")
        assert resolve.rooted(pid, root, resolve.AT_FDCWD, b"made") == b"/made"
        assert resolve.rooted(pid, root, fd, b"/abs") == b"/abs"  # from the root anyway


def test_an_absolute_symlink_resolves_in_the_callers_root(host: Path) -> None:
    """openat2 from the caller's root: an absolute symlink met on the way resolves inside it,
    whoever walks it (checked without the sandbox: the supervisor's resolver on a chroot)."""
    jail = host / "jail"
    jail.mkdir()
    (jail / "esc").symlink_to(host)  # inside the jail this names jail/<host path>
    with chrooted(jail) as (_pid, _fd, root):
        with pytest.raises(FileNotFoundError):
            resolve.openat2(root, b"/esc/secret", os.O_PATH)
        assert (host / "secret").exists()
