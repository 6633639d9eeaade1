"""Under --fs-overlay, the calls Landlock has no right for (chmod, chown, the times calls,
xattrs, inode flags) must not reach a host inode the layer did not copy: a host file open on
the target's stdout (reachable as fd 1 and as /proc/self/fd/1), and a host device node bound
into the layer's /dev. Found on the way to issue 15 item 3: `chmod 777 /proc/self/fd/1`
changed the host file's mode and `chmod 600 /dev/null` the host's /dev/null. The same calls
on the layer's own files still succeed, with `result: 0`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import AS_ROOT

pytestmark = pytest.mark.skipif(not AS_ROOT, reason="needs root: /dev/null belongs to root")
PY = "/usr/bin/python3"
SCRIPT = r"""
import os
def tried(what, fn, *args):
    try:
        fn(*args)
        print(what, "ok", flush=True)
    except OSError as err:
        print(what, err.errno, flush=True)
tried("chmod-fd", os.fchmod, 1, 0o777)
tried("chmod-proc", os.chmod, "/proc/self/fd/1", 0o777)
tried("chown-fd", os.fchown, 1, 4242, 4242)
tried("utime-fd", os.utime, 1, (1, 1))
tried("chmod-null", os.chmod, "/dev/null", 0o600)
tried("chown-null", os.chown, "/dev/null", 4242, 4242)
tried("xattr-fd", os.setxattr, 1, "user.bubble", b"x")
open("/tmp/layer-own", "w").close()
tried("chmod-own", os.chmod, "/tmp/layer-own", 0o700)
tried("chown-own", os.chown, "/tmp/layer-own", 4242, 4242)
st = os.stat("/tmp/layer-own")
print("own", oct(st.st_mode & 0o7777), st.st_uid, flush=True)
"""


def test_stdout_file_and_bound_devices_stay_as_they_were(tmp_path: Path) -> None:
    out = tmp_path / "stdout.txt"
    out.write_bytes(b"")
    os.chmod(out, 0o644)
    os.utime(out, (1_000_000_000, 1_000_000_000))
    before_out = out.stat()
    before_null = os.stat("/dev/null")
    events = tmp_path / "events.ndjson"
    with open(out, "ab") as fh:
        proc = subprocess.run(
            [sys.executable, "-m", "bubble", "run", "--events", str(events), "--fs-overlay",
             "--", PY, "-c", SCRIPT],
            stdout=fh, stderr=subprocess.PIPE, timeout=60,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    after_out, after_null = out.stat(), os.stat("/dev/null")
    # The host, checked from outside.
    assert after_out.st_mode == before_out.st_mode
    assert (after_out.st_uid, after_out.st_gid) == (before_out.st_uid, before_out.st_gid)
    assert after_out.st_atime == before_out.st_atime  # writes move mtime; utime would set 1
    assert after_null.st_mode == before_null.st_mode
    assert (after_null.st_uid, after_null.st_gid) == (before_null.st_uid, before_null.st_gid)
    assert "user.bubble" not in os.listxattr(out)
    # What the target saw: refused on host objects, done on its own.
    said = dict(line.split(" ", 1) for line in out.read_text().splitlines() if " " in line)
    for what in ("chmod-fd", "chmod-proc", "chown-fd", "utime-fd", "chmod-null", "chown-null"):
        assert said[what] != "ok", (what, said)
    assert said["chmod-own"] == "ok" and said["chown-own"] == "ok", said
    assert said["own"] == "0o700 4242", said
    # And the events: alerts for the host objects, results for the layer's.
    evs = [json.loads(line) for line in events.read_text().splitlines()]
    alerted = {e["syscall"] for e in evs if e["type"] == "policy.alert"}
    assert {"fchmod", "chmod", "fchown", "chown", "utimensat", "fsetxattr"} <= alerted, alerted
    own = [e for e in evs if e["type"] == "fs.write" and e.get("path") == "/tmp/layer-own"]
    assert {(e["syscall"], e.get("result")) for e in own} >= {("chmod", 0), ("chown", 0)}


def test_unprivileged_layer_keeps_touch_and_chmod(nobody_src: str) -> None:
    """A non-root supervisor cannot carry these calls out as the target (root of its user
    namespace): the kernel runs them, so `touch` and `chmod` on the layer's own files work."""
    from tests.kernel.conftest import nobody_cmd

    script = (
        "touch /tmp/u1 && chmod 700 /tmp/u1 && touch -d 2001-01-01 /tmp/u1 && stat -c %a /tmp/u1"
    )
    cmd = nobody_cmd(
        ["run", "--events", "/dev/null", "--fs-overlay", "--", "/bin/sh", "-c", script]
    )
    cmd = [f"PYTHONPATH={nobody_src}" if a.startswith("PYTHONPATH=") else a for a in cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd="/")
    assert proc.returncode == 0 and proc.stdout == "700\n", proc.stderr
    assert not Path("/tmp/u1").exists()
