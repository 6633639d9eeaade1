"""The seed's decision hook (`--decide CMD`, `SUPERVISOR_JSON_FD`) under the real filter: each
reply kind does what it says, seen on disk; garbage, silence and a crashing helper fail closed;
held calls never stop the supervisor from serving others."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import AS_ROOT, run_bubble, target_ids
from tests.kernel.conftest import SYSTEM_PYTHON

HELPER = textwrap.dedent(
    """
    import json, sys
    RULES = json.loads(sys.argv[1])
    for line in sys.stdin:
        req = json.loads(line)
        name = req.get("path", "").rsplit("/", 1)[-1]
        reply = RULES.get(name, RULES.get("*"))
        if reply == "garbage":
            print("{not json", flush=True)
            continue
        if reply == "silence":
            continue
        if reply == "crash":
            sys.exit(3)
        print(json.dumps({"id": req["id"], **reply}), flush=True)
    """
)


def helper(tmp: Path, rules: dict) -> str:
    script = tmp / "helper.py"
    script.write_text(HELPER)
    os.chmod(tmp, 0o755)
    os.chmod(script, 0o644)
    return f"{sys.executable} {script} '{json.dumps(rules)}'"


@pytest.fixture
def box(workdir: Path) -> Path:
    return workdir


def decided(r, name):
    return [e for e in r.events if e.get("path", "").endswith(name) and e["type"] != "policy.ask"]


def test_each_reply_kind(box, tmp_path):
    rules = {
        "allow.txt": {"action": "ALLOW"},
        "eacces.txt": {"action": "DENY_ERRNO", "errno": "EACCES"},
        "emul": {"action": "EMULATE_RET", "ret": 0},
        "q.txt": {"action": "QUARANTINE"},
        "d": {"action": "ALLOW"},
    }
    script = (
        f"echo a > {box}/allow.txt; echo b > {box}/eacces.txt; mkdir {box}/d; "
        f"rmdir {box}/emul; echo rmdir=$?; echo c > {box}/q.txt; echo end"
    )
    r = run_bubble(["/bin/sh", "-c", script], ["--decide", helper(tmp_path, rules)])
    assert r.stdout.splitlines() == ["rmdir=0", "end"], r.stderr
    assert (box / "allow.txt").read_text() == "a\n"
    assert (box / "d").is_dir()
    assert not (box / "eacces.txt").exists() and not (box / "q.txt").exists()
    if AS_ROOT:
        assert (box / "allow.txt").stat().st_uid == target_ids()[0]  # made as the target
    assert "Permission denied" in r.stderr  # EACCES reached the program
    (allow,) = decided(r, "allow.txt")
    assert allow["type"] == "policy.allow" and allow["decided_by"] == "helper"
    assert decided(r, "eacces.txt")[0]["denied"] == "EACCES"
    emul = decided(r, "/emul")[0]
    assert emul["reason"] == "emulated" and emul["ret"] == 0
    assert decided(r, "q.txt")[0]["reason"] == "quarantine"
    asks = r.of_type("policy.ask")
    assert len(asks) == 5 and all(a["ask_timeout_s"] == 5.0 for a in asks)


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        ("garbage", "not JSON"),
        ({"action": "MAYBE"}, "unknown action"),
        ({"action": "DENY_ERRNO", "errno": "ENOPE"}, "bad errno"),
        ("silence", "no decision within 1 s"),
        ("crash", "exited"),
    ],
)
def test_bad_helpers_fail_closed(box, tmp_path, reply, why):
    r = run_bubble(
        ["/bin/sh", "-c", f"echo a > {box}/x.txt; echo a > {box}/y.txt; echo end"],
        ["--decide", helper(tmp_path, {"*": reply}), "--decide-timeout", "1"],
        timeout=60,
    )
    assert r.stdout.strip() == "end"
    assert not list(box.iterdir())
    finals = decided(r, "x.txt")
    assert finals and finals[0]["type"] == "policy.alert" and finals[0]["denied"] == "EPERM"
    assert finals[0]["reason"] == "fail-closed" and why in finals[0]["detail"]


MANY = textwrap.dedent(
    """
    import os, sys, threading
    base = sys.argv[1]
    def work(t):
        for i in range(4):
            try:
                os.close(os.open(f"{base}/t{t}-{i}", os.O_WRONLY | os.O_CREAT, 0o644))
            except OSError:
                pass
    ts = [threading.Thread(target=work, args=(t,)) for t in range(50)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    print("done", len(os.listdir(base)))
    """
)


def test_200_held_calls_from_50_threads(box, tmp_path):
    rules = {"*": {"action": "ALLOW"}}
    r = run_bubble(
        [SYSTEM_PYTHON, "-c", MANY, str(box)],
        ["--decide", helper(tmp_path, rules)],
        timeout=120,
    )
    assert r.stdout.strip() == "done 200", r.stderr[-400:]
    assert len(r.of_type("policy.ask")) == 200
    assert len(r.of_type("policy.allow")) == 200


def test_supervisor_json_fd(box):
    """The seed's transport: a socket inherited as SUPERVISOR_JSON_FD, answered by us."""
    ours, theirs = socket.socketpair()
    env = {**os.environ, "SUPERVISOR_JSON_FD": str(theirs.fileno())}
    cmd = [
        sys.executable,
        "-m",
        "bubble",
        "run",
        "--events",
        str(box.parent / "ev.ndjson"),
        "--",
        "/bin/sh",
        "-c",
        f"echo a > {box}/via-fd.txt; echo end",
    ]
    proc = subprocess.Popen(
        cmd, env=env, pass_fds=(theirs.fileno(),), stdout=subprocess.PIPE, text=True
    )
    theirs.close()
    request = json.loads(ours.makefile().readline())
    assert request["path"] == f"{box}/via-fd.txt" and request["syscall"] == "openat"
    ours.sendall(json.dumps({"id": request["id"], "action": "ALLOW"}).encode() + b"\n")
    out, _ = proc.communicate(timeout=60)
    ours.close()
    assert out.strip() == "end"
    assert (box / "via-fd.txt").read_text() == "a\n"
    (box.parent / "ev.ndjson").unlink()


def test_allow_of_a_connect_is_refused_not_continued(box, tmp_path):
    """socket() is all registers, so ALLOW lets it through; connect's address is in memory,
    so ALLOW cannot CONTINUE it: denied, the listener gets nothing, and the event says why."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    code = f"import socket; s=socket.socket(); print('rc', s.connect_ex(('127.0.0.1', {port})))"
    r = run_bubble(
        [SYSTEM_PYTHON, "-c", code], ["--decide", helper(tmp_path, {"*": {"action": "ALLOW"}})]
    )
    srv.settimeout(0.5)
    with pytest.raises(TimeoutError):
        srv.accept()
    srv.close()
    assert r.stdout.startswith("rc ") and r.stdout.strip() != "rc 0"
    connect = [e for e in r.events if e.get("syscall") == "connect" and e["type"] != "policy.ask"]
    assert connect and connect[0]["type"] == "policy.alert"
    assert "cannot be carried out safely" in connect[0]["detail"]
