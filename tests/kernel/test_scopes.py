"""Write scopes under the real filter and Landlock: exactly the scoped directory is writable,
and no path trick (symlink, `..`, hard link, rename, a racing thread) carries a write outside.
Every effect is checked from outside, on disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import AS_ROOT, run_bubble, target_ids
from tests.kernel.conftest import SYSTEM_PYTHON, nobody_cmd


@pytest.fixture
def dirs(workdir: Path) -> tuple[Path, Path]:
    inside, outside = workdir / "in", workdir / "out"
    for d in (inside, outside):
        d.mkdir()
        os.chmod(d, 0o777)  # writable for the target's user: only the policy stands in the way
    return inside, outside


def sh(script: str, scope: Path, *flags: str):
    return run_bubble(["/bin/sh", "-c", script], [f"--allow-write={scope}", *flags])


def test_writes_inside_the_scope_happen_and_outside_are_denied(dirs):
    inside, outside = dirs
    r = sh(f"echo in > {inside}/a; mkdir {inside}/d; echo out > {outside}/b; echo after", inside)
    assert r.stdout.strip() == "after"
    assert (inside / "a").read_text() == "in\n" and (inside / "d").is_dir()
    assert not (outside / "b").exists()
    allowed = [e for e in r.of_type("fs.write") if e.get("scope") == str(inside)]
    assert {e["path"] for e in allowed} == {f"{inside}/a", f"{inside}/d"}
    assert [e["path"] for e in r.alerts] == [f"{outside}/b"]


def test_symlink_and_dotdot_cannot_leave_the_scope(dirs):
    inside, outside = dirs
    (inside / "link").symlink_to(outside / "victim")
    (inside / "dirlink").symlink_to(outside)
    r = sh(
        f"echo 1 > {inside}/link; echo 2 > {inside}/dirlink/x; echo 3 > {inside}/../out/y; "
        "echo after",
        inside,
    )
    assert r.stdout.strip() == "after"
    assert sorted(p.name for p in outside.iterdir()) == []
    # `..` is normalised before the check: the alert names the real place.
    assert f"{outside}/y" in [e["path"] for e in r.alerts]


def test_hard_link_in_and_rename_out_are_refused(dirs):
    inside, outside = dirs
    secret = outside / "secret"
    secret.write_text("keep\n")
    os.chmod(secret, 0o666)
    (inside / "mine").write_text("mine\n")
    os.chmod(inside / "mine", 0o666)
    if AS_ROOT:
        os.chown(inside / "mine", *target_ids())
    r = sh(
        f"ln {secret} {inside}/alias; echo pwn >> {inside}/alias; mv {inside}/mine {outside}/;"
        " echo after",
        inside,
    )
    assert r.stdout.strip() == "after"
    assert secret.read_text() == "keep\n"
    # The append made a new file in the scope, not a second name of the secret.
    assert (inside / "alias").stat().st_ino != secret.stat().st_ino
    assert (inside / "mine").exists() and not (outside / "mine").exists()
    assert {e["syscall"] for e in r.alerts} >= {"linkat", "renameat2"}


def test_chmod_and_times_in_a_scope_are_performed_by_the_supervisor(dirs):
    inside, outside = dirs
    victim = outside / "victim"
    victim.write_text("v\n")
    if AS_ROOT:
        os.chown(victim, *target_ids())  # the target could change it, were it not for the scope
    os.chmod(victim, 0o644)
    before = victim.stat()
    r = sh(
        f"echo x > {inside}/f; chmod 700 {inside}/f; touch -d 2001-01-01 {inside}/f;"
        f" chmod 777 {victim}; touch -d 2001-01-01 {victim}; touch {inside}/new; echo after",
        inside,
    )
    assert r.stdout.strip() == "after", r.stderr
    st = (inside / "f").stat()
    assert st.st_mode & 0o777 == 0o700
    assert time.gmtime(st.st_mtime).tm_year == 2001
    assert (inside / "new").exists()
    after = victim.stat()
    assert (after.st_mode, after.st_mtime_ns) == (before.st_mode, before.st_mtime_ns)
    performed = [e for e in r.of_type("fs.write") if e.get("detail", "").startswith("performed")]
    assert {e["syscall"] for e in performed} >= {"fchmodat", "utimensat"}
    assert all(e["scope"] == str(inside) for e in performed)
    assert {e["path"] for e in r.alerts} == {str(victim)}


@pytest.mark.skipif(not AS_ROOT, reason="needs a file the target does not own")
def test_performed_chmod_keeps_the_callers_permissions(dirs):
    inside, _ = dirs
    rootfile = inside / "rootfile"
    rootfile.write_text("r\n")
    os.chmod(rootfile, 0o644)  # owned by root: nobody may not chmod it, scope or not
    r = sh(f"chmod 777 {rootfile}; echo rc=$?", inside)
    assert "rc=1" in r.stdout
    assert rootfile.stat().st_mode & 0o777 == 0o644
    (event,) = [e for e in r.of_type("fs.write") if e["syscall"] == "fchmodat"]
    assert event["detail"] == "performed by the supervisor: EPERM"


def test_chown_is_never_scoped(dirs):
    inside, _ = dirs
    r = sh(f"echo x > {inside}/f; chgrp 0 {inside}/f; echo after", inside)
    assert r.stdout.strip() == "after"
    assert [e["syscall"] for e in r.alerts if e["category"] == "fs"] == ["fchownat"]


RACE = r"""
import ctypes, os, sys, threading
libc = ctypes.CDLL(None, use_errno=True)
good, bad = sys.argv[1].encode(), sys.argv[2].encode()
n = max(len(good), len(bad)) + 1
buf = ctypes.create_string_buffer(good, n)
stop = False
def flip():
    while not stop:
        ctypes.memmove(buf, bad + b"\0", len(bad) + 1)
        ctypes.memmove(buf, good + b"\0", len(good) + 1)
t = threading.Thread(target=flip); t.start()
made = 0
for _ in range(3000):
    fd = libc.open(buf, os.O_WRONLY | os.O_CREAT, 0o644)
    if fd >= 0:
        made += 1
        os.close(fd)
stop = True; t.join()
print("opened", made)
"""


def test_a_thread_swapping_the_path_never_writes_outside(dirs):
    inside, outside = dirs
    good, bad = f"{inside}/ok", f"{outside}/pwned"
    r = run_bubble([SYSTEM_PYTHON, "-c", RACE, good, bad], [f"--allow-write={inside}"], timeout=120)
    assert r.stdout.startswith("opened"), r.stderr[-500:]
    assert not Path(bad).exists()
    assert (inside / "ok").exists()


def test_policy_file_and_its_errors(dirs, tmp_path):
    inside, outside = dirs
    policy = tmp_path / "p.toml"
    policy.write_text(f'[fs]\nwrite = ["{inside}"]\n')
    r = run_bubble(
        ["/bin/sh", "-c", f"echo x > {inside}/a; echo y > {outside}/b"], ["--policy", str(policy)]
    )
    assert (inside / "a").exists() and not (outside / "b").exists()
    for text, needle in (
        ("[fs]\nwrites = []\n", "unknown key 'writes'"),
        ("[disk]\n", "unknown policy section [disk]"),
        ('[fs]\nwrite = ["tmp/x"]\n', "not absolute"),
        ('[fs]\nwrite = ["/"]\n', "write scope of / allows every write"),
        ('[net]\nconnect = ["127.0.0.1"]\n', "not HOST:PORT"),
        ("[fs\n", "does not parse"),
    ):
        policy.write_text(text)
        r = run_bubble(["/bin/true"], ["--policy", str(policy)])
        assert r.rc == 125 and needle in r.stderr, (text, r.stderr)
    r = run_bubble(["/bin/true"], [f"--allow-write={inside}/missing"])
    assert r.rc == 125 and "does not exist" in r.stderr


def test_without_landlock_scoped_writes_are_denied(dirs):
    inside, _ = dirs
    env = {**os.environ, "BUBBLE_TEST_LANDLOCK_ABI": "0"}
    with_env = run_bubble(
        ["/bin/sh", "-c", f"echo x > {inside}/a"], [f"--allow-write={inside}"], env=env
    )
    assert not (inside / "a").exists()
    assert [e["path"] for e in with_env.alerts] == [f"{inside}/a"]
    notes = " ".join(e["message"] for e in with_env.of_type("sandbox.msg"))
    assert "write scopes" in notes


@pytest.mark.skipif(not AS_ROOT, reason="runs bubble as nobody from root")
def test_scopes_as_a_non_root_operator(dirs):
    inside, outside = dirs
    proc = subprocess.run(
        nobody_cmd(
            [
                "run",
                f"--allow-write={inside}",
                "--",
                "/bin/sh",
                "-c",
                f"echo x > {inside}/a; echo y > {outside}/b",
            ]
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (inside / "a").exists(), proc.stderr
    assert not (outside / "b").exists()


def test_suggest_then_rerun_has_no_alert(dirs, tmp_path):
    inside, outside = dirs
    script = (
        f"mkdir -p {inside}/build/obj; for m in a b c; do mkdir -p {inside}/build/$m;"
        f" echo $m > {inside}/build/$m/out.o; done; touch {inside}/build/stamp;"
        f" chmod 755 {inside}/build/a/out.o; cat /etc/hostname > /dev/null"
    )
    events = tmp_path / "first.ndjson"
    first = run_bubble(["/bin/sh", "-c", script])
    assert first.alerts and not (inside / "build").exists()
    events.write_text("\n".join(json.dumps(e) for e in first.events) + "\n")
    policy = tmp_path / "suggested.toml"
    out = subprocess.run(
        [sys.executable, "-m", "bubble", "policy", "suggest", str(events)],
        capture_output=True,
        text=True,
        check=True,
    )
    policy.write_text(out.stdout)
    assert f'"{inside}"' in out.stdout and str(outside) not in out.stdout
    again = run_bubble(["/bin/sh", "-c", script], ["--policy", str(policy)])
    assert again.alerts == [], again.alerts
    assert (inside / "build" / "c" / "out.o").read_text() == "c\n"
    assert (inside / "build" / "a" / "out.o").stat().st_mode & 0o777 == 0o755
