"""Who the target is and what it holds: no_new_privs, the unprivileged user it runs as when the
launcher is root, no capabilities, a usable working directory, no inherited descriptors, and
no way to reach the event channel. Also a launcher that is not root at all.

The target reports its own view (/proc/self/status, /proc/self/fd, its cwd); where it matters
the effect is also checked from outside (the events file holds no forged line).
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
from pathlib import Path

import pytest

from tests.conftest import AS_ROOT, NOBODY, run_bubble
from tests.kernel.conftest import (
    bubble_cmd,
    events_in_stderr,
    needs_root,
    nobody_cmd,
    parse_events,
    result_line,
)

STATUS_KEYS = ("Uid", "Gid", "Groups", "NoNewPrivs", "CapInh", "CapPrm", "CapEff", "CapAmb")


def _status(stdout: str) -> dict[str, list[str]]:
    """Fields of a /proc/self/status the target printed."""
    out = {}
    for line in stdout.splitlines():
        key, _, value = line.partition(":")
        if key in STATUS_KEYS:
            out[key] = value.split()
    return out


def _target_status(flags: list[str] = ()) -> dict[str, list[str]]:
    # cat reads its own /proc/self/status: the target's view of itself, after exec.
    res = run_bubble(["/bin/cat", "/proc/self/status"], flags)
    assert res.rc == 0, res.stderr
    return _status(res.stdout)


def test_no_new_privs_always():
    """no_new_privs is set on the target under the default policy and with everything
    allowed."""
    assert _target_status()["NoNewPrivs"] == ["1"]
    assert _target_status(["--deny-fs=0", "--deny-net=0"])["NoNewPrivs"] == ["1"]


@needs_root
def test_root_launcher_runs_target_as_nobody_without_capabilities():
    """As root, the target runs as nobody (real, effective, saved and fs ids), with no
    supplementary groups and an empty capability set."""
    st = _target_status()
    assert st["Uid"] == [str(NOBODY.pw_uid)] * 4
    assert st["Gid"] == [str(NOBODY.pw_gid)] * 4
    assert st.get("Groups", []) == []
    for cap in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
        assert int(st[cap][0], 16) == 0, (cap, st[cap])


@needs_root
def test_user_flag_picks_the_account():
    """--user NAME runs the target as that account, and the spawn event says so."""
    name = next(n for n in ("daemon", "bin", "www-data") if _exists(n))
    entry = pwd.getpwnam(name)
    res = run_bubble(["/bin/cat", "/proc/self/status"], ["--user", name])
    st = _status(res.stdout)
    assert st["Uid"] == [str(entry.pw_uid)] * 4 and st["Gid"] == [str(entry.pw_gid)] * 4
    assert int(st["CapEff"][0], 16) == 0
    assert res.events[0]["user"] == name


def _exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@needs_root
def test_keep_root_is_explicit_and_still_no_new_privs():
    """Only --keep-root keeps uid 0; no_new_privs is set even then."""
    st = _target_status(["--keep-root"])
    assert st["Uid"] == ["0"] * 4 and st["NoNewPrivs"] == ["1"]


def test_user_flag_needs_root_when_not_root():
    """A non-root launcher cannot switch users: --user is refused with 125 and one line."""
    cmd = (
        nobody_cmd(["run", "--user", "daemon", "--", "/bin/true"])
        if AS_ROOT
        else bubble_cmd(["/bin/true"], ["--user", "daemon"])
    )
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 125
    assert proc.stderr.count("\n") == 1 and "--user" in proc.stderr


@needs_root
def test_root_only_cwd_falls_back_to_a_usable_directory(tmp_path: Path):
    """Launched from a 0700 root directory the target cannot use, the target lands in a
    directory it can use: it lists it, pwd works, and the run succeeds."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    res = run_bubble(["/bin/sh", "-c", "pwd; ls -a . >/dev/null && echo listed"], cwd=str(private))
    assert res.rc == 0, res.stderr
    cwd, listed = res.stdout.splitlines()
    assert listed == "listed"
    assert cwd != str(private) and os.path.isabs(cwd)
    assert res.events[0]["cwd"] == cwd


def test_usable_cwd_is_kept(workdir: Path):
    """A working directory the target can use is kept as is."""
    res = run_bubble(["/bin/pwd"], cwd=str(workdir))
    assert res.stdout == f"{workdir}\n" and res.events[0]["cwd"] == str(workdir)


def test_inherited_descriptors_are_closed(probe, tmp_path: Path):
    """A descriptor the launcher inherited without CLOEXEC (here: passed on purpose) is closed
    before exec: the target has only 0, 1 and 2."""
    leak = os.open(tmp_path / "leak", os.O_WRONLY | os.O_CREAT, 0o600)
    os.set_inheritable(leak, True)
    try:
        proc = subprocess.run(
            bubble_cmd([probe, "fds"], events="/dev/null"),
            pass_fds=(leak,),
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        os.close(leak)
    assert result_line(proc.stdout, "FDS") == "FDS 0 1 2", (leak, proc.stdout)


@pytest.mark.parametrize("as_root", [True, False], ids=["root-launcher", "same-user-launcher"])
def test_target_cannot_reach_the_event_channel(workdir: Path, as_root: bool):
    """Even with writes allowed, the target cannot open the launcher's events descriptor
    through /proc/PPID/fd/N (the supervisor is not dumpable), so no forged line appears."""
    if not AS_ROOT:
        pytest.skip("needs root to run the launcher both as root and as nobody")
    events = workdir / "events.ndjson"
    # Try every low descriptor number: the events fd is one of them.
    script = (
        "for n in $(seq 0 31); do echo '{\"forged\":1}' >/proc/$PPID/fd/$n; done 2>/dev/null; "
        "ls /proc/$PPID/fd >/dev/null 2>&1 && echo listed || echo not-listed"
    )
    args = ["run", "--deny-fs=0", "--events", str(events), "--", "/bin/sh", "-c", script]
    cmd = (
        bubble_cmd(["/bin/sh", "-c", script], ["--deny-fs=0"], str(events))
        if as_root
        else nobody_cmd(args)
    )
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, timeout=30)
    assert proc.stdout == "not-listed\n", proc.stderr
    lines = events.read_text().splitlines()
    assert all("forged" not in json.loads(line) for line in lines)
    parse_events("\n".join(lines))


# --- a launcher that is not root ------------------------------------------------------------------
@needs_root
def test_non_root_launcher(workdir: Path):
    """`bubble run` started as nobody: the target runs as nobody with no_new_privs and no
    capabilities, denials work (no file appears), events are complete."""
    target = workdir / "blocked"
    script = f"cat /proc/self/status; echo x >{target}; echo after"
    proc = subprocess.run(
        nobody_cmd(["run", "--", "/bin/sh", "-c", script]),
        capture_output=True,
        text=True,
        cwd=workdir,
        timeout=30,
    )
    events, other = events_in_stderr(proc.stderr)
    assert proc.returncode == 0, other
    st = _status(proc.stdout)
    assert st["Uid"] == [str(NOBODY.pw_uid)] * 4 and st["NoNewPrivs"] == ["1"]
    assert int(st["CapEff"][0], 16) == 0 and int(st["CapPrm"][0], 16) == 0
    assert proc.stdout.endswith("after\n") and not target.exists()
    [alert] = [e for e in events if e["type"] == "policy.alert"]
    assert alert["path"] == str(target) and alert["denied"] == "EPERM"
    assert events[0]["type"] == "process.spawn" and "user" not in events[0]


@needs_root
def test_non_root_launcher_closes_inherited_descriptors(probe, workdir: Path):
    """The fd hygiene holds for a non-root launcher too."""
    leak = os.open(workdir / "leak", os.O_WRONLY | os.O_CREAT, 0o666)
    os.set_inheritable(leak, True)
    try:
        proc = subprocess.run(
            nobody_cmd(["run", "--events", "/dev/null", "--", probe, "fds"]),
            pass_fds=(leak,),
            capture_output=True,
            text=True,
            cwd=workdir,
            timeout=30,
        )
    finally:
        os.close(leak)
    assert result_line(proc.stdout, "FDS") == "FDS 0 1 2", proc.stderr
