"""The seed README's "Handy test recipes", run for real.

Each recipe is checked by its effect seen from outside the sandbox (the file, the listener),
not only by the events Bubble reports about it. Network recipes talk to a loopback listener the
test starts instead of example.com.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import run_bubble
from tests.kernel.conftest import bubble_cmd, events_in_stderr


def test_recipe_file_write_denied(workdir: Path):
    """`sh -lc 'echo hi > FILE'`: no file appears, the shell reports EPERM and goes on, and the
    alert names the path and the symbolic flags."""
    target = workdir / "blocked.txt"
    res = run_bubble(["/bin/sh", "-lc", f"echo hi > {target}; echo still-running"])
    assert not target.exists()
    assert res.stdout == "still-running\n"
    assert "Operation not permitted" in res.stderr
    [alert] = [a for a in res.alerts if a["category"] == "fs"]
    assert (alert["syscall"], alert["path"], alert["flags"]) == (
        "openat",
        str(target),
        "O_WRONLY|O_CREAT|O_TRUNC",
    )
    assert (alert["denied"], alert["reason"]) == ("EPERM", "errno")
    assert res.exit["exit_code"] == 0 and res.rc == 0


def test_issue_exact_command_prints_after_and_leaves_no_file():
    """The issue's literal command line, events on stderr (the default): it prints `after`,
    /tmp/blocked.txt does not exist afterwards, and stderr carries the alert."""
    blocked = Path("/tmp/blocked.txt")
    blocked.unlink(missing_ok=True)  # a stale file from elsewhere would hide a failure
    proc = subprocess.run(
        bubble_cmd(["/bin/sh", "-c", "echo hi > /tmp/blocked.txt; echo after"]),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.stdout == "after\n"
    assert not blocked.exists()
    events, other = events_in_stderr(proc.stderr)
    [alert] = [e for e in events if e["type"] == "policy.alert"]
    assert alert["path"] == "/tmp/blocked.txt" and alert["flags"] == "O_WRONLY|O_CREAT|O_TRUNC"
    assert "cannot create /tmp/blocked.txt: Operation not permitted" in other
    assert proc.returncode == 0


def test_recipe_file_write_allowed(workdir: Path):
    """`--deny-fs=0 -- sh -lc 'echo ok > FILE'`: the file exists with its content, and the write
    is still logged (fs.write, decision ALLOW)."""
    target = workdir / "allowed.txt"
    res = run_bubble(["/bin/sh", "-lc", f"echo ok > {target}"], ["--deny-fs=0"])
    assert target.read_text() == "ok\n"
    assert res.rc == 0 and not res.alerts
    writes = [e for e in res.of_type("fs.write") if e["path"] == str(target)]
    assert writes and writes[0]["decision"] == "ALLOW"
    assert writes[0]["flags"] == "O_WRONLY|O_CREAT|O_TRUNC"


def test_recipe_network_connect_denied(http_listener):
    """`sh -lc 'curl -s URL || true'` under the default policy: curl's socket is made inside
    the network wall, its connect is denied, the listener never sees a connection, and the
    alert names the destination."""
    res = run_bubble(["/bin/sh", "-lc", f"curl -s {http_listener.url} || true"])
    assert res.rc == 0 and res.stdout == ""
    assert http_listener.connections == 0 and http_listener.requests == []
    connects = [a for a in res.alerts if a["syscall"] == "connect"]
    assert [(a["peer"], a["port"], a["denied"]) for a in connects] == [
        ("127.0.0.1", http_listener.port, "EPERM")
    ], res.alerts
    assert any(e["family_name"] == "AF_INET" for e in res.of_type("net.socket"))


def test_recipe_network_connect_allowed(http_listener):
    """`--deny-net=0 -- sh -lc 'curl -s URL >/dev/null'`: the listener gets the request, the
    body goes to /dev/null (which works under --deny-fs=1) and nothing is denied."""
    res = run_bubble(
        ["/bin/sh", "-lc", f"curl -s {http_listener.url} >/dev/null"], ["--deny-net=0"]
    )
    assert res.rc == 0, res.stderr
    assert http_listener.requests == ["/"]
    assert res.stdout == "", "the body must have gone to /dev/null"
    assert not res.alerts
    devnull = [e for e in res.of_type("fs.write") if e["path"] == "/dev/null"]
    assert devnull and devnull[0]["decision"] == "ALLOW"


def test_recipe_exec_visibility():
    """`--notify-exec -- sh -lc '/usr/bin/echo hello'`: the program runs (CONTINUE) and its exec
    is a process.spawn with path and argv."""
    res = run_bubble(["/bin/sh", "-lc", "/usr/bin/echo hello"], ["--notify-exec"])
    assert res.stdout == "hello\n" and res.rc == 0
    spawns = [e for e in res.of_type("process.spawn") if e.get("syscall") == "execve"]
    echo = [e for e in spawns if e["exe"] == "/usr/bin/echo"]
    assert len(echo) == 1, spawns
    assert echo[0]["argv"] == ["/usr/bin/echo", "hello"] and echo[0]["syscall_no"] == 59
    assert not res.alerts or all(a["syscall"] != "execve" for a in res.alerts)


def test_trace_net_with_peek_logs_curls_request(http_listener):
    """`--deny-net=0 --trace-net --peek-tx=32`: curl's request reaches the listener, and the
    events show its socket, its connect to the listener and the first bytes it sent."""
    res = run_bubble(
        ["/usr/bin/curl", "-s", "-o", "/dev/null", http_listener.url],
        ["--deny-net=0", "--trace-net", "--peek-tx=32"],
    )
    assert res.rc == 0 and http_listener.requests == ["/"]
    assert not res.alerts
    sockets = [e for e in res.of_type("net.socket") if e["family_name"] == "AF_INET"]
    assert sockets and sockets[0]["decision"] == "ALLOW"
    [connect] = [e for e in res.of_type("net.connect") if e.get("port") == http_listener.port]
    assert connect["peer"] == "127.0.0.1" and connect["decision"] == "ALLOW"
    [peek] = res.of_type("net.tx.peek")
    assert bytes.fromhex(peek["hex"]).startswith(b"GET / HTTP/1.1\r\n")
    assert len(bytes.fromhex(peek["hex"])) == 32 < peek["bytes"]
