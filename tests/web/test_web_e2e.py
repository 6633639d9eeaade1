"""End to end with the real engine behind a real `bubble serve` on a free loopback port:
denials, allowed network (seen from outside), dropped files, the watchdog, the queue,
the seed's API, uploads, and crash/stop recovery."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.web.helpers import ServeProcess, SSEClient, wait_done

pytestmark = pytest.mark.usefixtures("engine")

PROBE = """
import socket, sys
print("hello from the sandbox", flush=True)
try:
    open("blocked.txt", "w")
    print("write: allowed", flush=True)
except OSError as e:
    print("write: errno", e.errno, flush=True)
try:
    s = socket.socket()
    s.connect(("127.0.0.1", int(sys.argv[1])))
    s.sendall(b"ping")
    print("connect: allowed", flush=True)
except OSError as e:
    print("connect: errno", e.errno, flush=True)
"""


@pytest.fixture
def served(data_dir: Path, db_url: str | None) -> Iterator[ServeProcess]:
    server = ServeProcess(data_dir, *(["--db-url", db_url] if db_url else []))
    yield server
    server.stop()


def post_run(base: str, **body: object) -> str:
    resp = requests.post(f"{base}/api/runs", json=body, timeout=10)
    assert resp.status_code == 202, resp.text
    assert resp.headers["Location"] == f"/api/runs/{resp.json()['id']}"
    return resp.json()["id"]


def all_events(base: str, run_id: str) -> list[dict]:
    url = f"{base}/api/runs/{run_id}/events?format=json&limit=5000&after="
    out: list[dict] = []
    while True:
        page = requests.get(url + str(out[-1]["seq"] if out else 0), timeout=10).json()
        out += page["events"]
        if page["done"]:
            return out


def artifact(base: str, rec: dict, kind: str) -> bytes:
    (art,) = [a for a in rec["artifacts"] if a["kind"] == kind]
    resp = requests.get(base + art["url"], timeout=10)
    assert resp.status_code == 200
    assert resp.headers["Content-Disposition"].startswith("attachment;")
    assert hashlib.sha256(resp.content).hexdigest() == art["sha256"]
    return resp.content


@pytest.fixture
def listener() -> Iterator[tuple[int, list[bytes]]]:
    """A loopback TCP server: what it receives proves a connection really happened."""
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(15)
    got: list[bytes] = []

    def accept() -> None:
        try:
            conn, _ = srv.accept()
            with conn:
                got.append(conn.recv(100))
        except OSError:
            return  # closed by the test: nobody connected

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield srv.getsockname()[1], got
    srv.close()
    thread.join(5)


def test_denied_write_and_network_are_reported_and_the_program_continues(
    served: ServeProcess, listener: tuple[int, list[bytes]]
) -> None:
    port, received = listener
    run_id = post_run(served.url, cmd=["python3", "-c", PROBE, str(port)])
    rec = wait_done(served.url, run_id)
    assert rec["status"] == "completed" and rec["exit_code"] == 0, rec
    out = artifact(served.url, rec, "stdout").decode()
    assert "hello from the sandbox" in out
    assert "write: errno 1" in out and "connect: errno 1" in out  # EPERM, and it went on
    assert received == []  # nothing reached the listener
    events = all_events(served.url, run_id)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["type"] == "process.exit"
    alerts = [e for e in events if e["type"] == "policy.alert"]
    fs = [a for a in alerts if a["category"] == "fs"]
    assert fs and fs[0]["path"].endswith("/blocked.txt") and fs[0]["denied"] == "EPERM"
    assert any(a["category"] == "net" for a in alerts)
    assert rec["counts"]["fs"] >= 1 and rec["counts"]["net"] >= 1
    assert rec["policy"]["notify_exec"] is True  # the UI default
    ndjson = artifact(served.url, rec, "events").decode().splitlines()
    assert [json.loads(line) for line in ndjson] == events
    assert rec["max_rss_kb"] > 1000 and rec["duration_ms"] is not None


def test_allowing_network_lets_the_connection_through(
    served: ServeProcess, listener: tuple[int, list[bytes]]
) -> None:
    port, received = listener
    run_id = post_run(
        served.url, cmd=["python3", "-c", PROBE, str(port)], permissions={"network": True}
    )
    rec = wait_done(served.url, run_id)
    assert rec["counts"]["net"] == 0 and rec["counts"]["fs"] >= 1
    assert "connect: allowed" in artifact(served.url, rec, "stdout").decode()
    deadline = time.monotonic() + 5
    while not received and time.monotonic() < deadline:
        time.sleep(0.05)
    assert received == [b"ping"]


def test_allowed_writes_are_reported_as_dropped_files(served: ServeProcess) -> None:
    content = b"dropped by the target\n" * 3
    script = f"open('drop.bin','wb').write({content!r}); import os; os.mkdir('sub')"
    run_id = post_run(served.url, cmd=["python3", "-c", script], permissions={"fs_write": True})
    rec = wait_done(served.url, run_id)
    assert rec["status"] == "completed", rec
    files = {f["name"]: f for f in rec["dropped_files"]}
    assert files["drop.bin"]["size"] == len(content)
    assert files["drop.bin"]["sha256"] == hashlib.sha256(content).hexdigest()
    assert files["sub"]["kind"] == "dir"
    events = all_events(served.url, run_id)
    exit_at = next(i for i, e in enumerate(events) if e["type"] == "process.exit")
    drop = events[-1]
    assert drop["type"] == "fs.drop" and exit_at == len(events) - 2
    assert drop["count"] == 2 and drop["seq"] == events[exit_at]["seq"] + 1
    (art,) = [a for a in rec["artifacts"] if a["kind"] == "dropped"]
    assert art["id"] == files["drop.bin"]["artifact_id"]
    assert artifact(served.url, rec, "dropped") == content


def test_watchdog_ends_a_run_at_its_timeout(served: ServeProcess) -> None:
    start = time.monotonic()
    run_id = post_run(served.url, cmd="sleep 30", timeout=1)
    rec = wait_done(served.url, run_id, timeout=30)
    assert rec["status"] == "timeout" and rec["timed_out"], rec
    assert time.monotonic() - start < 10


def test_runs_beyond_the_worker_count_wait_in_the_queue(data_dir: Path) -> None:
    server = ServeProcess(data_dir, "--workers", "1")
    try:
        first = post_run(server.url, cmd="sleep 1")
        second = post_run(server.url, cmd="/bin/true")
        time.sleep(0.3)
        assert requests.get(f"{server.url}/api/runs/{second}", timeout=5).json()["status"] == (
            "queued"
        )
        a, b = wait_done(server.url, first), wait_done(server.url, second)
        assert a["status"] == b["status"] == "completed"
        assert b["started_at"] >= a["ended_at"]
    finally:
        server.stop()


def test_seed_upload_and_blocking_run(served: ServeProcess) -> None:
    script = b'#!/bin/sh\necho "args: $*"\necho x > seed.txt || true\n'
    up = requests.post(f"{served.url}/upload", files={"file": ("t.sh", script)}, timeout=10).json()
    body = {"uploaded_path": up["path"], "args": "one 'two three'", "notify_exec": True}
    body |= {"permissions": {"fs_write": False, "network": False}}
    result = requests.post(f"{served.url}/run", json=body, timeout=60).json()
    assert result["stdout"] == "args: one two three\n"
    assert result["exit_code"] == 0 and result["sample_id"] == up["id"]
    assert result["mode"] == "deny-with-EPERM-continue" and result["offline"] is True
    types = [e["type"] for e in result["alerts"]]
    assert types[0] == "process.spawn" and "policy.alert" in types
    assert result["dropped_files"] == [] and result["stdout_artifact_id"]
    assert isinstance(result["duration_s"], float)


def test_uploaded_data_file_runs_with_an_interpreter(served: ServeProcess) -> None:
    up = requests.post(
        f"{served.url}/api/uploads",
        files={"file": ("p.py", b"import sys; print(sys.argv[1:])")},
        timeout=10,
    ).json()
    assert up["executable"] is False
    run_id = post_run(served.url, upload_id=up["id"], interpreter="python3", args=["a b"])
    rec = wait_done(served.url, run_id)
    assert rec["command"] == ["python3", "./sample.py", "a b"]
    assert artifact(served.url, rec, "stdout") == b"['a b']\n"


def test_a_flood_of_denials_is_stored_without_loss(served: ServeProcess) -> None:
    n = 20_000
    script = (
        f"import os\nfor i in range({n}):\n    try: os.mkdir('d%d' % i)\n    except OSError: pass"
    )
    run_id = post_run(served.url, cmd=["python3", "-c", script], timeout=120)
    seqs: list[int] = []
    for msg in SSEClient(f"{served.url}/api/runs/{run_id}/events").messages(timeout=120):
        if msg.event == "end":
            break
        seqs.append(int(msg.id))
    rec = wait_done(served.url, run_id)
    assert rec["counts"]["fs"] == n, rec["counts"]
    assert seqs == list(range(1, rec["last_seq"] + 1))


def test_run_in_flight_at_a_crash_is_marked_interrupted(data_dir: Path) -> None:
    import signal

    server = ServeProcess(data_dir)
    try:
        run_id = post_run(server.url, cmd="sleep 30", timeout=2)
        deadline = time.monotonic() + 10
        while requests.get(f"{server.url}/api/runs/{run_id}", timeout=5).json()["status"] != (
            "running"
        ):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        server.stop(signal.SIGKILL)
    again = ServeProcess(data_dir)
    try:
        rec = requests.get(f"{again.url}/api/runs/{run_id}", timeout=5).json()
        assert rec["status"] == "interrupted" and "in flight" in rec["error"]
        time.sleep(2.5)  # the orphaned launcher ends at its own --timeout
    finally:
        again.stop()


def test_stopping_the_server_records_running_runs(data_dir: Path) -> None:
    server = ServeProcess(data_dir)
    run_id = post_run(server.url, cmd="sleep 30", timeout=20)
    time.sleep(0.5)
    assert server.stop() == 0
    again = ServeProcess(data_dir)
    try:
        rec = requests.get(f"{again.url}/api/runs/{run_id}", timeout=5).json()
        assert rec["status"] == "interrupted" and "stopped during the run" in rec["error"]
    finally:
        again.stop()


def test_non_loopback_bind_needs_a_long_token_kept_out_of_ps(
    data_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(RuntimeError, match=r"\(125\).*without an access token"):
        ServeProcess(data_dir, "--host", "0.0.0.0")
    with pytest.raises(RuntimeError, match=r"\(125\).*at least 16 characters"):
        ServeProcess(data_dir, "--host", "0.0.0.0", env={"BUBBLE_TOKEN": "t0k"})
    token = secrets.token_urlsafe(24)
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    server = ServeProcess(data_dir, "--host", "0.0.0.0", "--token-file", str(token_file))
    try:
        # Nothing on the command line (what `ps` shows every user) holds the token.
        assert token.encode() not in Path(f"/proc/{server.proc.pid}/cmdline").read_bytes()
        base = server.url.replace("0.0.0.0", "127.0.0.1")
        assert requests.get(f"{base}/api/runs", timeout=5).status_code == 401
        auth = {"Authorization": f"Bearer {token}"}
        assert requests.get(f"{base}/api/runs", headers=auth, timeout=5).status_code == 200
    finally:
        server.stop()


def test_the_command_is_kept_as_typed_for_display_and_re_runs(served: ServeProcess) -> None:
    run_id = post_run(served.url, cmd="printf '%s|' 'a  b'  c", args="'d e'")
    rec = wait_done(served.url, run_id)
    assert rec["command"] == ["printf", "%s|", "a  b", "c", "d e"]
    assert rec["command_line"] == "printf '%s|' 'a  b'  c 'd e'"
    assert artifact(served.url, rec, "stdout") == b"a  b|c|d e|"
    listed = requests.get(f"{served.url}/api/runs?limit=1", timeout=5).json()["runs"][0]
    assert listed["command_line"] == rec["command_line"]


def test_a_program_that_cannot_start_fails_with_the_launchers_reason(
    served: ServeProcess,
) -> None:
    missing = wait_done(served.url, post_run(served.url, cmd="/nonexistent/prog"))
    assert missing["status"] == "failed" and missing["exit_code"] == 127
    assert "/nonexistent/prog" in missing["error"] and missing["hint"]
    killed = wait_done(served.url, post_run(served.url, cmd="sh -c 'kill -9 $$'"))
    assert killed["status"] == "completed" and killed["signal"] == 9
    assert killed["exit_code"] is None and killed["launcher_status"] == 137


def test_overlay_writes_stay_in_the_layer_and_are_listed_with_real_paths(
    served: ServeProcess, tmp_path: Path
) -> None:
    victim = Path(tempfile.mkdtemp(prefix="bubble-web-victim-", dir="/tmp"))
    os.chmod(victim, 0o755)
    (victim / "keep").write_bytes(b"host file\n")
    evil = victim.with_name(victim.name + "-evil.txt")
    script = f"echo x > {evil}; rm -rf {victim}; echo y >> /etc/hostname; cat {evil}"
    hostname = Path("/etc/hostname").read_bytes()
    try:
        run_id = post_run(
            served.url, cmd=["/bin/sh", "-c", script], permissions={"fs_write": "overlay"}
        )
        rec = wait_done(served.url, run_id)
        assert rec["status"] == "completed" and rec["exit_code"] == 0, rec
        assert rec["policy"]["permissions"]["fs_write"] == "overlay"
        assert rec["rerun"]["permissions"]["fs_write"] == "overlay"  # a re-run keeps the layer
        # The host: untouched.
        assert not evil.exists() and (victim / "keep").read_bytes() == b"host file\n"
        assert Path("/etc/hostname").read_bytes() == hostname
        # The summary: real paths, sha256, download links to our copies.
        files = {f["name"]: f for f in rec["dropped_files"]}
        assert files[str(evil)]["sha256"] == hashlib.sha256(b"x\n").hexdigest()
        modified = {f["name"]: f for f in rec["modified_files"]}
        assert modified["/etc/hostname"]["change"] == "modified"
        deleted = {f["name"] for f in rec["deleted_files"]}
        assert {str(victim), str(victim / "keep")} <= deleted
        arts = {a["id"]: a for a in rec["artifacts"] if a["kind"] == "dropped"}
        art = arts[files[str(evil)]["artifact_id"]]
        assert art["name"] == str(evil)
        url = f"{served.url}/api/runs/{run_id}/artifacts/{art['id']}"
        assert requests.get(url, timeout=10).content == b"x\n"
        host_art = arts[modified["/etc/hostname"]["artifact_id"]]
        got = requests.get(f"{served.url}/api/runs/{run_id}/artifacts/{host_art['id']}", timeout=10)
        assert got.content == hostname + b"y\n"
    finally:
        shutil.rmtree(victim, ignore_errors=True)


def test_fs_write_takes_only_true_false_or_overlay(served: ServeProcess) -> None:
    resp = requests.post(
        f"{served.url}/api/runs",
        json={"cmd": "true", "permissions": {"fs_write": "layer"}},
        timeout=10,
    )
    assert resp.status_code == 400 and "overlay" in resp.json()["error"]


def test_simulated_internet_records_and_keeps_the_payload(
    served: ServeProcess, listener: tuple[int, list[bytes]]
) -> None:
    """`permissions.network: "sim"`: the connection reaches the sinkhole inside the wall, not
    the host's listener, and its payload is a run artifact named by its net.capture."""
    port, received = listener
    run_id = post_run(
        served.url, cmd=["python3", "-c", PROBE, str(port)], permissions={"network": "sim"}
    )
    rec = wait_done(served.url, run_id)
    assert rec["policy"]["permissions"]["network"] == "sim"
    assert "connect: allowed" in artifact(served.url, rec, "stdout").decode()
    [cap] = [e for e in all_events(served.url, run_id) if e["type"] == "net.capture"]
    assert (cap["peer"], cap["port"], cap["text"]) == ("127.0.0.1", port, "ping")
    assert artifact(served.url, rec, "capture") == b"ping"
    [art] = [a for a in rec["artifacts"] if a["kind"] == "capture"]
    assert art["id"] == cap["artifact"] and art["sha256"] == cap["sha256"]
    time.sleep(0.5)
    assert received == [], "the host's listener got the connection"
