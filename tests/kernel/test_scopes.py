"""Write scopes under the real filter and Landlock: exactly the scoped directory is writable,
and no path trick (symlink, `..`, hard link, rename, a racing thread) carries a write outside.
Every effect is checked from outside, on disk."""

from __future__ import annotations

import os
import subprocess
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


def test_metadata_changes_are_not_scoped(dirs):
    inside, _ = dirs
    r = sh(f"echo x > {inside}/f; chmod 700 {inside}/f; echo after", inside)
    assert r.stdout.strip() == "after"
    assert (inside / "f").stat().st_mode & 0o777 != 0o700
    assert [e["syscall"] for e in r.alerts] == ["fchmodat"]


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
