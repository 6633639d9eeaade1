"""Events say what really happened (issue 15, item 3): under an allow (`--deny-fs=0`, or
`--fs-overlay`) the supervisor carries the fs calls out itself, as the kernel would for the
target, and the `fs.write` event carries `result` (0 or the errno name).

Real programs; every effect is checked from outside (the host file, its mode, the directory
listing) and inside (what the program printed).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import AS_ROOT, run_bubble
from tests.kernel.conftest import events_in_stderr, nobody_cmd
from tests.kernel.test_decide import helper

pytestmark = pytest.mark.skipif(not AS_ROOT, reason="needs root: the target runs as nobody")
HOST_WRITES = ["--deny-fs=0"]
OVERLAY = ["--fs-overlay"]


def fs_events(result, syscall: str, path: str | None = None) -> list[dict]:
    return [
        e
        for e in result.of_type("fs.write")
        if e["syscall"] == syscall and (path is None or e.get("path") == path)
    ]


def one_result(result, syscall: str, path: str) -> object:
    found = fs_events(result, syscall, path)
    assert len(found) == 1, (syscall, path, result.events)
    assert found[0]["decision"] == "ALLOW"
    return found[0].get("result", "<absent>")


@pytest.fixture
def owned() -> Iterator[Path]:
    """A host directory the target (nobody) owns, for real writes under --deny-fs=0."""
    path = Path(tempfile.mkdtemp(prefix="bubble-fsresult-", dir="/tmp"))
    os.chmod(path, 0o755)
    os.chown(path, 65534, 65534)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_failed_chmod_of_a_host_file_is_not_shown_as_a_success() -> None:
    """The issue's example: `fchmodat /etc/passwd 0777` as nobody fails, and says so."""
    before = os.stat("/etc/passwd")
    r = run_bubble(["/bin/chmod", "0777", "/etc/passwd"], HOST_WRITES)
    assert r.rc != 0 and "Operation not permitted" in r.stderr
    assert one_result(r, "fchmodat", "/etc/passwd") == "EPERM"
    assert os.stat("/etc/passwd").st_mode == before.st_mode


def test_results_under_host_writes_match_the_effects(owned: Path) -> None:
    script = (
        "umask 077; mkdir d && : > d/f; rmdir d; echo rc=$?; echo hi > x && mv x y; "
        "ln -s y z; rm z; cat y"
    )
    r = run_bubble(["/bin/sh", "-c", script], HOST_WRITES, cwd=str(owned))
    assert "rc=1" in r.stdout and r.stdout.endswith("hi\n"), r.stderr
    assert one_result(r, "mkdir", f"{owned}/d") == 0
    assert one_result(r, "rmdir", f"{owned}/d") == "ENOTEMPTY"
    assert one_result(r, "renameat2", f"{owned}/x") == 0
    assert one_result(r, "symlinkat", f"{owned}/z") == 0
    assert one_result(r, "unlinkat", f"{owned}/z") == 0
    created = [e for e in fs_events(r, "openat") if e["path"] == f"{owned}/x"]
    assert [e["result"] for e in created] == [0]
    # The effects are there, made as the target: its owner, its umask (077).
    assert sorted(os.listdir(owned)) == ["d", "y"]
    assert (owned / "y").read_bytes() == b"hi\n"
    st = os.stat(owned / "y")
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (65534, 0o600)
    assert stat.S_IMODE(os.stat(owned / "d").st_mode) == 0o700
    assert os.stat(owned / "d" / "f").st_uid == 65534


def test_denied_by_the_kernel_is_reported(owned: Path) -> None:
    """A directory nobody may not write: EACCES, as the kernel answers, nothing created."""
    locked = owned / "locked"
    locked.mkdir(mode=0o555)
    os.chown(locked, 0, 0)
    r = run_bubble(["/bin/sh", "-c", f"mkdir {locked}/x; : > {locked}/y"], HOST_WRITES)
    assert one_result(r, "mkdir", f"{locked}/x") == "EACCES"
    assert [e["result"] for e in fs_events(r, "openat", f"{locked}/y")] == ["EACCES"]
    assert os.listdir(locked) == []


def test_chmod_of_a_host_file_succeeds_in_the_layer_only() -> None:
    before = os.stat("/etc/passwd")
    r = run_bubble(["/bin/sh", "-c", "chmod 0777 /etc/passwd && ls -l /etc/passwd"], OVERLAY)
    assert r.rc == 0 and r.stdout.startswith("-rwxrwxrwx"), r.stderr
    assert one_result(r, "fchmodat", "/etc/passwd") == 0
    assert os.stat("/etc/passwd").st_mode == before.st_mode
    assert any(e["path"] == "/etc/passwd" for e in r.of_type("fs.drop"))


def test_results_in_the_layer(tmp_path: Path) -> None:
    """As root, the target is root of the layer's user namespace: it owns root's files, so
    no capability decides these calls, and every result is known."""
    work = tmp_path / "w"
    script = (
        f"mkdir {work} && echo a > {work}/f; rmdir {work}; echo rc=$?; "
        f"cd {work} && mv f g && cat g && rm g && ls -a"
    )
    r = run_bubble(["/bin/sh", "-c", script], OVERLAY)
    assert r.stdout == "rc=1\na\n.\n..\n", r.stderr
    assert one_result(r, "mkdir", str(work)) == 0
    assert one_result(r, "rmdir", str(work)) == "ENOTEMPTY"
    assert one_result(r, "renameat2", f"{work}/f") == 0
    assert one_result(r, "unlinkat", f"{work}/g") == 0
    assert not work.exists()  # all of it happened in the layer
    assert {e["path"]: e["change"] for e in r.of_type("fs.drop")}[str(work)] == "created"


def test_what_cannot_be_reproduced_runs_in_the_kernel_without_a_result(owned: Path) -> None:
    """A write under /proc (the supervisor's /proc/self is not the target's) and a device
    are left to the kernel: the call still works, and the event claims no result."""
    script = "echo 0 > /proc/self/oom_score_adj; echo rc=$?; echo x > /dev/null; echo ok"
    r = run_bubble(["/bin/sh", "-c", script], HOST_WRITES, cwd=str(owned))
    assert r.stdout == "rc=0\nok\n", r.stderr
    for event in fs_events(r, "openat", "/proc/self/oom_score_adj"):
        assert "result" not in event


def test_names_the_kernel_reads_differently_are_left_to_it(owned: Path) -> None:
    """`unlink("f/")` is ENOTDIR for the kernel; acting on the name without its slash would
    delete the file. The kernel runs it: the file stays, and the event claims no result."""
    (owned / "f").write_bytes(b"keep\n")
    os.chown(owned / "f", 65534, 65534)
    code = "import os\ntry:\n    os.unlink('f/')\nexcept OSError as e:\n    print(e.errno)\n"
    r = run_bubble(["/usr/bin/python3", "-c", code], HOST_WRITES, cwd=str(owned))
    assert r.stdout == "20\n", r.stderr  # ENOTDIR
    assert (owned / "f").read_bytes() == b"keep\n"
    assert one_result(r, "unlink", f"{owned}/f/") == "<absent>"


def test_a_refusal_that_may_be_ours_alone_is_not_reported(tmp_path: Path) -> None:
    """In the layer the target is root of a user namespace: its CAP_DAC_OVERRIDE there lets it
    write a read-only file of root's. We do not carry DAC_OVERRIDE into its path walks (we
    cannot check every directory crossed is mapped there), so our EACCES is not its result:
    the kernel runs the call, which succeeds in the layer, and the event claims nothing."""
    ro = tmp_path / "ro"
    ro.write_bytes(b"old\n")
    os.chmod(ro, 0o444)
    r = run_bubble(["/bin/sh", "-c", f"echo new > {ro} && cat {ro}"], OVERLAY)
    assert r.stdout == "new\n", r.stderr
    assert one_result(r, "openat", str(ro)) == "<absent>"
    assert ro.read_bytes() == b"old\n"


def test_unprivileged_launcher_reports_no_result(tmp_path: Path, nobody_src: str) -> None:
    """A non-root supervisor cannot take the capabilities its target holds as root of the
    layer's user namespace: every call goes to the kernel, no event claims a result."""
    work = Path(tempfile.mkdtemp(prefix="bubble-fsresult-", dir="/tmp"))
    os.chown(work, 65534, 65534)
    try:
        script = f"mkdir {work}/d && rmdir {work}/d && echo ok"
        cmd = nobody_cmd(["run", "--events", "-", "--fs-overlay", "--", "/bin/sh", "-c", script])
        cmd = [f"PYTHONPATH={nobody_src}" if a.startswith("PYTHONPATH=") else a for a in cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd="/")
        events, _ = events_in_stderr(proc.stderr)
        assert proc.stdout == "ok\n", proc.stderr
        writes = [e for e in events if e["type"] == "fs.write"]
        assert {e["syscall"] for e in writes} >= {"mkdir", "rmdir"}
        assert all("result" not in e for e in writes), writes
        assert os.listdir(work) == []
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_a_decision_helpers_allow_reports_the_result(owned: Path, tmp_path: Path) -> None:
    """Under --deny-fs=1, a helper's ALLOW is carried out by the supervisor too: the
    `policy.allow` event says how it ended."""
    rules = {"*": {"action": "ALLOW"}}
    before = os.stat("/etc/passwd")
    script = f"chmod 0777 /etc/passwd; mkdir {owned}/made; echo end"
    r = run_bubble(["/bin/sh", "-c", script], ["--decide", helper(tmp_path, rules)])
    assert r.stdout == "end\n", r.stderr
    allowed = {e["path"]: e for e in r.of_type("policy.allow")}
    assert allowed["/etc/passwd"]["result"] == "EPERM"
    assert allowed[f"{owned}/made"]["result"] == 0
    assert (owned / "made").is_dir() and os.stat("/etc/passwd").st_mode == before.st_mode


def test_unprivileged_launcher_with_host_writes_reports_results(
    owned: Path, nobody_src: str
) -> None:
    """A non-root supervisor and its target share uid, groups and (no) capabilities: it can
    take the target's identity exactly, so results are known."""
    script = f"mkdir {owned}/d && : > {owned}/d/f; rmdir {owned}/d; chmod 0777 /etc/passwd; echo ok"
    cmd = nobody_cmd(["run", "--events", "-", "--deny-fs=0", "--", "/bin/sh", "-c", script])
    cmd = [f"PYTHONPATH={nobody_src}" if a.startswith("PYTHONPATH=") else a for a in cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd="/")
    events, _ = events_in_stderr(proc.stderr)
    assert proc.stdout == "ok\n", proc.stderr
    got = {(e["syscall"], e["path"]): e.get("result") for e in events if e["type"] == "fs.write"}
    assert got[("mkdir", f"{owned}/d")] == 0
    assert got[("rmdir", f"{owned}/d")] == "ENOTEMPTY"
    assert got[("fchmodat", "/etc/passwd")] == "EPERM"
    assert (owned / "d" / "f").exists()
