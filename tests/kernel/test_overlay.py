"""--fs-overlay: real programs write anywhere into a throwaway layer; the host stays as it was,
and the run reports every change as an `fs.drop` event.

Each test looks from outside (host files byte for byte, modes, owners) and from inside (the
program saw its writes succeed), as root and as an unprivileged launcher.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import AS_ROOT, run_bubble
from tests.kernel.conftest import SYSTEM_PYTHON, nobody_cmd, parse_events

pytestmark = pytest.mark.skipif(not AS_ROOT, reason="needs root: host files owned by root")
OVERLAY = ["--fs-overlay"]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def state(path: Path) -> dict[str, tuple]:
    """Everything under `path` as the host sees it: kind, mode, owner, content."""
    out = {}
    for p in [path, *sorted(path.rglob("*"))]:
        st = p.lstat()
        content = p.read_bytes() if p.is_file() and not p.is_symlink() else None
        out[str(p)] = (st.st_mode, st.st_uid, st.st_gid, content)
    return out


@pytest.fixture
def host() -> Iterator[Path]:
    """A root-owned host directory the target will attack, readable by everyone."""
    path = Path(tempfile.mkdtemp(prefix="bubble-host-", dir="/tmp"))
    os.chmod(path, 0o755)
    (path / "victim" / "sub").mkdir(parents=True)
    (path / "victim" / "sub" / "f").write_bytes(b"keep me\n")
    (path / "conf").write_bytes(b"mode=old\n")
    (path / "secret").write_bytes(b"host secret\n")
    os.chmod(path / "secret", 0o644)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def drops(result) -> dict[str, dict]:
    return {e["path"]: e for e in result.of_type("fs.drop")}


def test_done_when_command_leaves_the_host_unchanged_and_reports_the_drops(host: Path) -> None:
    evil, victim = host / "evil.txt", host / "victim"
    hostname = Path("/etc/hostname").read_bytes()
    before = state(host)
    script = f"echo x > {evil}; rm -rf {victim}; echo y >> /etc/hostname; cat {evil}"
    r = run_bubble(["/bin/sh", "-c", script], OVERLAY)
    assert r.rc == 0 and r.stdout == "x\n", r.stderr
    assert not evil.exists() and state(host) == before
    assert Path("/etc/hostname").read_bytes() == hostname
    d = drops(r)
    assert d[str(evil)]["change"] == "created" and d[str(evil)]["sha256"] == sha(b"x\n")
    assert d["/etc/hostname"]["change"] == "modified"
    assert d["/etc/hostname"]["sha256"] == sha(hostname + b"y\n")
    for gone in (victim, victim / "sub", victim / "sub" / "f"):
        assert d[str(gone)]["change"] == "deleted", gone
    assert r.exit["exit_code"] == 0


def test_real_programs_change_only_the_layer(host: Path) -> None:
    home = host / "home"
    archive = host / "pkg.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("pkg/bin/tool")
        data = b"#!/bin/sh\necho tool\n"
        info.size, info.mode, info.uid, info.gid = len(data), 0o755, 65534, 65534
        tar.addfile(info, io.BytesIO(data))
    before = state(host)
    script = f"""
set -e
echo redirected > {host}/new.txt
mkdir -p {host}/a/b/c
sed -i s/old/new/ {host}/conf
chmod 600 {host}/secret
chown 65534:65534 {host}/conf
mkdir -p {home} && tar -C {home} -xf {archive}
printf 'int main(void){{return 7;}}\\n' > /tmp/bubble-cc-$$.c
gcc -o /tmp/bubble-cc-$$ /tmp/bubble-cc-$$.c
set +e; /tmp/bubble-cc-$$; echo "compiled rc=$?"
cat {host}/conf; stat -c '%a %u' {host}/secret {host}/conf {home}/pkg/bin/tool
"""
    r = run_bubble(["/bin/sh", "-c", script], OVERLAY, env={**os.environ, "HOME": str(home)})
    assert r.rc == 0, r.stderr
    # Inside: every write succeeded.
    assert "compiled rc=7" in r.stdout and "mode=new" in r.stdout
    assert "600 0\n644 65534\n755 65534" in r.stdout
    # Outside: nothing changed.
    assert state(host) == before
    assert not list(Path("/tmp").glob("bubble-cc-*"))
    d = drops(r)
    assert d[f"{host}/new.txt"]["sha256"] == sha(b"redirected\n")
    assert d[f"{host}/a/b/c"]["kind"] == "dir" and d[f"{host}/a/b/c"]["change"] == "created"
    assert d[f"{host}/conf"]["change"] == "modified"
    assert d[f"{host}/conf"]["sha256"] == sha(b"mode=new\n")
    assert d[f"{host}/secret"]["change"] == "metadata" and d[f"{host}/secret"]["mode"] == 0o600
    tool = d[f"{home}/pkg/bin/tool"]
    assert tool["change"] == "created" and tool["mode"] == 0o755
    assert any(p.startswith("/tmp/bubble-cc-") and p.endswith(".c") for p in d)


ESCAPES = r"""
import os, sys
host = sys.argv[1]
target = host + "/secret"
def attempt(name, f):
    try:
        f()
        print(name, "ok")
    except OSError as e:
        print(name, "errno", e.errno)
def write(path):
    def f():
        with open(path, "w") as fh:
            fh.write("pwned\n")
    return f
root = os.open("/", os.O_RDONLY)
attempt("self-root", write("/proc/self/root" + target))
attempt("pid1-root", write("/proc/1/root" + target))
attempt("parent-cwd", write(f"/proc/{os.getppid()}/cwd/../../..{target}"))
attempt("dotdot", write("/../../.." + target))
attempt("dirfd-root", lambda: os.write(os.open(target[1:], os.O_WRONLY | os.O_TRUNC, dir_fd=root), b"pwned"))
attempt("symlink", lambda: (os.symlink(target, host + "/ln"), write(host + "/ln")()))
attempt("hardlink", lambda: (os.link(target, host + "/hl"), write(host + "/hl")()))
attempt("stdin", lambda: os.write(0, b"pwned"))
attempt("mknod", lambda: os.mknod(host + "/disk", 0o600 | 0o060000, os.makedev(254, 0)))
attempt("dev-disk", lambda: os.close(os.open("/dev/vda", os.O_RDWR)))
attempt("sysrq", write("/proc/sysrq-trigger"))
attempt("proc-sys", write("/proc/sys/kernel/domainname"))
attempt("sys", write("/sys/kernel/uevent_helper"))
print("inside:", open(target).read().strip())
"""


def _escape_attempts(r) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in r.stdout.splitlines() if " " in line)


def test_escapes_reach_only_the_layer(host: Path) -> None:
    stdin_file = host / "stdin.txt"
    stdin_file.write_bytes(b"input\n")
    before = state(host)
    with open(stdin_file, "r+b") as stdin:  # a read-write stdin: the target gets it read-only
        proc = subprocess.run(
            [*_bubble(), "--", SYSTEM_PYTHON, "-c", ESCAPES, str(host)],
            stdin=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
    seen = _escape_attempts(proc)
    assert state(host) == before, proc.stdout
    # Paths that name our own root land in the layer and succeed there.
    assert seen["self-root"] == "ok" and seen["dotdot"] == "ok" and seen["dirfd-root"] == "ok"
    assert seen["symlink"] == "ok" and seen["hardlink"] == "ok"
    # Paths into another process's filesystem view are refused by the kernel.
    assert seen["pid1-root"] == "errno 13" and seen["parent-cwd"] == "errno 13"
    assert seen["stdin"] == "errno 9"
    assert seen["mknod"].startswith("errno") and seen["dev-disk"] == "errno 2"
    assert seen["sysrq"] == "errno 2" and seen["proc-sys"] == "errno 30"
    assert seen["sys"] in ("errno 30", "errno 2")
    assert seen["inside:"] == "pwned"


def _bubble(*flags: str) -> list[str]:
    return [sys.executable, "-m", "bubble", "run", "--events", "/dev/null", *OVERLAY, *flags]


def test_drop_list_matches_a_snapshot_diff(host: Path) -> None:
    """What the target's own snapshot of the tree shows changed is exactly what fs.drop says."""
    snap = (
        "import os, sys, json, hashlib\n"
        "out = {}\n"
        "for d, dirs, files in os.walk(sys.argv[1]):\n"
        "    for n in dirs + files:\n"
        "        p = os.path.join(d, n)\n"
        "        c = open(p, 'rb').read() if os.path.isfile(p) else b''\n"
        "        out[p] = [os.lstat(p).st_mode, hashlib.sha256(c).hexdigest()]\n"
        "print(json.dumps(out))\n"
    )
    changes = (
        f"rm -r {host}/victim/sub; echo n > {host}/n1; mkdir {host}/d; echo m > {host}/d/m;"
        f" echo more >> {host}/conf; chmod 700 {host}/secret; ln -s conf {host}/lnk;"
    )
    script = f'{SYSTEM_PYTHON} -c "$SNAP" {host}; {changes} {SYSTEM_PYTHON} -c "$SNAP" {host}'
    r = run_bubble(["/bin/sh", "-c", script], OVERLAY, env={**os.environ, "SNAP": snap})
    first, second = (json.loads(line) for line in r.stdout.splitlines())
    expected = {p: "created" for p in second.keys() - first.keys()}
    expected |= {p: "deleted" for p in first.keys() - second.keys()}
    for p in first.keys() & second.keys():
        if first[p][1] != second[p][1]:
            expected[p] = "modified"
        elif first[p][0] != second[p][0]:
            expected[p] = "metadata"
    got = {p: e["change"] for p, e in drops(r).items() if p.startswith(f"{host}/")}
    assert got == expected


def test_renames_are_reported_as_such(host: Path) -> None:
    script = f"mv {host}/conf {host}/conf.moved; echo n > {host}/tmp1; mv {host}/tmp1 {host}/final"
    r = run_bubble(["/bin/sh", "-c", script], OVERLAY)
    d = drops(r)
    moved = d[f"{host}/conf.moved"]
    assert moved["change"] == "renamed" and moved["path2"] == f"{host}/conf"
    assert moved["sha256"] == sha(b"mode=old\n") and f"{host}/conf" not in d
    assert d[f"{host}/final"]["change"] == "created"  # its old name never existed on the host
    assert (host / "conf").exists() and not (host / "conf.moved").exists()


def test_layer_size_cap_fails_writes_with_enospc_and_says_so(host: Path) -> None:
    script = f"head -c 8000000 /dev/zero > {host}/big; echo rc=$?"
    r = run_bubble(["/bin/sh", "-c", script], [*OVERLAY, "--max-layer", "2M"])
    assert "No space left on device" in r.stderr and "rc=1" in r.stdout
    assert not (host / "big").exists()
    assert r.exit["limit"] == "layer"
    assert any(
        e["action"] == "limit" and "ENOSPC" in e["message"] for e in r.of_type("sandbox.msg")
    )
    assert drops(r)[f"{host}/big"]["size"] <= 2 << 20


def test_copies_and_kept_layer(host: Path, tmp_path: Path) -> None:
    out = tmp_path / "drops"
    script = f"echo payload > {host}/stage2; echo y >> /etc/hostname; rm {host}/conf"
    r = run_bubble(["/bin/sh", "-c", script], [f"--fs-overlay={out}", "--keep-layer"])
    assert (out / str(host / "stage2")[1:]).read_bytes() == b"payload\n"
    assert (out / "etc" / "hostname").read_bytes() == Path("/etc/hostname").read_bytes() + b"y\n"
    assert drops(r)[f"{host}/stage2"]["copy"] == str(out / str(host / "stage2")[1:])
    kept = next(e for e in r.of_type("sandbox.msg") if e["action"] == "layer.kept")
    layer = Path(kept["message"].rsplit(" ", 1)[1])
    assert (layer / "upper" / "tmp" / host.name / "stage2").read_bytes() == b"payload\n"
    assert (host / "conf").exists() and not (host / "stage2").exists()


@pytest.mark.parametrize(
    "flags",
    [["--pidns"], ["--keep-root"], ["--deny-net=1", "--memory", "512M", "--max-procs", "64"]],
)
def test_works_with_other_policies(host: Path, flags: list[str]) -> None:
    r = run_bubble(["/bin/sh", "-c", f"echo z > {host}/conf; cat {host}/conf"], OVERLAY + flags)
    assert r.stdout == "z\n" and (host / "conf").read_bytes() == b"mode=old\n"
    assert drops(r)[f"{host}/conf"]["change"] == "modified"


def test_named_user_writes_where_it_may(host: Path) -> None:
    r = run_bubble(
        ["/bin/sh", "-c", f"id -u; echo a > /tmp/bubble-u-$$; echo b > {host}/conf"],
        [*OVERLAY, "--user", "nobody"],
    )
    assert r.stdout.startswith("65534") and "Permission denied" in r.stderr
    assert (host / "conf").read_bytes() == b"mode=old\n"
    assert [p for p in drops(r) if p.startswith("/tmp/bubble-u-")]


def test_unprivileged_launcher(host: Path, nobody_src: str) -> None:
    """As `nobody`: root of its own user namespace, mapped to nobody. Its own files work as
    for root; files of ids it cannot map (root's) cannot be copied into the layer, so they
    stay unwritable there too (docs/security.md). The host never changes."""
    for path in [host, *host.rglob("*")]:
        os.lchown(path, 65534, 65534)  # the operator's own tree, directly below /tmp
    before = state(host)
    script = (
        f"echo x > {host}/victim/new; rm -r {host}/victim/sub; echo c > {host}/conf;"
        f" cat {host}/victim/new; echo y >> /etc/hostname"
    )
    cmd = nobody_cmd(["run", "--events", "-", "--fs-overlay", "--", "/bin/sh", "-c", script])
    cmd = [f"PYTHONPATH={nobody_src}" if a.startswith("PYTHONPATH=") else a for a in cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd="/")
    events = parse_events(
        "\n".join(line for line in proc.stderr.splitlines() if line.startswith('{"seq":'))
    )
    assert proc.stdout == "x\n", proc.stderr
    assert "cannot create /etc/hostname: Permission denied" in proc.stderr
    assert state(host) == before
    d = {e["path"]: e for e in events if e["type"] == "fs.drop"}
    assert d[f"{host}/victim/new"]["change"] == "created"
    assert d[f"{host}/victim/sub/f"]["change"] == "deleted"
    assert d[f"{host}/conf"]["sha256"] == sha(b"c\n")
    assert "/etc/hostname" not in d
