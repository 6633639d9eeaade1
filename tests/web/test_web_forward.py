"""`BUBBLE_API` forwarding to a real HTTP receiver on loopback, and the NDJSON offline sink
when the API is unset or unreachable; plus the runner's watchdog backstop."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from flask import Flask

from bubble.jobs.runner import CANCELLED, WATCHDOG, _watch
from bubble.web import shutdown
from tests.web.helpers import jobs_of, make_app


class Receiver(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.got: list[tuple[str, object]] = []


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:  # the name http.server calls
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.got.append((self.path, json.loads(body)))
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        return  # keep test output quiet


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    srv = Receiver()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def run_once(app: Flask, cmd: str) -> str:
    client = app.test_client()
    run_id = client.post("/api/runs", json={"cmd": cmd}).get_json()["id"]
    jobs = jobs_of(app)
    assert jobs.wait(run_id, 30) == "completed"
    # The run is recorded as completed before the executor queues it for forwarding, so a
    # drain() here could come first (it failed 1 in 5 alone): wait for the forwarder's own
    # mark instead, set once the run went to the API or the offline sink.
    deadline = time.monotonic() + 30
    while (jobs.store.get_run(run_id) or {}).get("offline") is None:
        assert time.monotonic() < deadline, "the run was never forwarded"
        time.sleep(0.02)
    return run_id


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.usefixtures("engine")
def test_runs_events_and_artifacts_are_posted_to_the_api(
    tmp_path: Path, receiver: Receiver
) -> None:
    app = make_app(tmp_path / "d", BUBBLE_API=f"http://127.0.0.1:{receiver.server_port}/")
    try:
        run_id = run_once(app, "/bin/sh -c 'echo hi > f'")
        paths = [p for p, _ in receiver.got]
        assert paths[0] == "/v1/samples"
        assert paths.count("/v1/runs") == 2  # started, then finished
        runs = [b for p, b in receiver.got if p == "/v1/runs"]
        assert runs[0]["status"] == "queued" and runs[1]["status"] == "completed"
        (events,) = [b for p, b in receiver.got if p == "/v1/events"]
        assert [e["event"]["seq"] for e in events] == list(range(1, len(events) + 1))
        assert all(e["run_id"] == run_id for e in events)
        arts = [b for p, b in receiver.got if p == "/v1/artifacts"]
        assert {a["type"] for a in arts} == {"stdout", "stderr", "events"}
        assert all(a["checksum"].startswith("sha256:") for a in arts)
        assert jobs_of(app).store.get_run(run_id)["offline"] is False
        assert not (tmp_path / "d" / "offline" / "v1_events.ndjson").exists()
    finally:
        shutdown(app)


@pytest.mark.usefixtures("engine")
def test_unreachable_api_falls_back_to_the_offline_sink(tmp_path: Path) -> None:
    app = make_app(tmp_path / "d", BUBBLE_API=f"http://127.0.0.1:{closed_port()}")
    try:
        run_id = run_once(app, "/bin/true")
        lines = (tmp_path / "d" / "offline" / "v1_events.ndjson").read_text().splitlines()
        docs = [json.loads(line) for line in lines]
        assert docs and all(d["error"] and d["payload"]["run_id"] == run_id for d in docs)
        assert docs[-1]["payload"]["event"]["type"] == "process.exit"
        assert jobs_of(app).store.get_run(run_id)["offline"] is True
    finally:
        shutdown(app)


@pytest.mark.usefixtures("engine")
def test_without_an_api_records_go_to_the_offline_sink(tmp_path: Path) -> None:
    app = make_app(tmp_path / "d")
    try:
        run_id = run_once(app, "/bin/true")
        offline = tmp_path / "d" / "offline"
        runs = [json.loads(x) for x in (offline / "v1_runs.ndjson").read_text().splitlines()]
        assert [r["status"] for r in runs] == ["queued", "completed"]
        events = (offline / "v1_events.ndjson").read_text().splitlines()
        assert json.loads(events[0])["event"]["seq"] == 1 and "error" not in events[0]
        assert (offline / "v1_artifacts.ndjson").exists()
        assert jobs_of(app).store.get_run(run_id)["offline"] is True
    finally:
        shutdown(app)


@pytest.mark.usefixtures("engine")
def test_offline_envelopes_carry_every_stored_event_exactly(tmp_path: Path) -> None:
    # The offline sink splices the stored lines: each envelope must still be the JSON
    # document the API path would have sent (the same keys, the event verbatim).
    app = make_app(tmp_path / "d")
    try:
        run_id = run_once(app, "/bin/sh -c 'echo hi > /etc/bubble-nope; true'")
        lines = (tmp_path / "d" / "offline" / "v1_events.ndjson").read_text().splitlines()
        stored = list(jobs_of(app).store.iter_events(run_id))
        assert len(lines) == len(stored) >= 3
        for line, (seq, data) in zip(lines, stored, strict=True):
            doc = json.loads(line)
            event = json.loads(data)
            assert list(doc) == ["event_id", "sample_id", "run_id", "host_id", "timestamp", "event"]
            assert doc["event_id"] == f"{run_id}:{seq}" and doc["run_id"] == run_id
            assert doc["event"] == event and doc["timestamp"] == event["ts"]
        assert any(json.loads(x)["event"]["type"] == "policy.alert" for x in lines)
    finally:
        shutdown(app)


def test_watchdog_kills_the_whole_group_of_an_overrunning_launcher() -> None:
    # A stand-in for a launcher that ignores its own timeout: a shell with a child.
    proc = subprocess.Popen(
        ["/bin/sh", "-c", "sleep 30 & echo $!; wait"],
        stdout=subprocess.PIPE,
        start_new_session=True,
        text=True,
    )
    assert proc.stdout is not None
    child = int(proc.stdout.readline())
    start = time.monotonic()
    assert _watch(proc, 0.3) == WATCHDOG
    assert 0.3 <= time.monotonic() - start < 5
    assert proc.returncode == -9
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child}").exists():  # the grandchild went with the group
        status = Path(f"/proc/{child}/stat").read_text().split()[2]
        if status == "Z":
            break
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.stdout.close()


def test_watchdog_leaves_a_launcher_that_ends_in_time() -> None:
    proc = subprocess.Popen(["/bin/true"], start_new_session=True)
    assert _watch(proc, 5) is None
    assert proc.returncode == 0


def test_a_cancel_wakes_the_watch_and_ends_the_whole_group() -> None:
    """The cancel path kills as the watchdog does: the launcher's group, grandchild too."""
    proc = subprocess.Popen(
        ["/bin/sh", "-c", "sleep 30 & echo $!; wait"],
        stdout=subprocess.PIPE,
        start_new_session=True,
        text=True,
    )
    assert proc.stdout is not None
    child = int(proc.stdout.readline())
    wake = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
    asked = threading.Event()
    timer = threading.Timer(0.2, lambda: (asked.set(), os.eventfd_write(wake, 1)))
    timer.start()
    try:
        assert _watch(proc, 60, wake, asked.is_set) == CANCELLED
    finally:
        timer.join()
        os.close(wake)
    assert proc.returncode == -9
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child}").exists():
        if Path(f"/proc/{child}/stat").read_text().split()[2] == "Z":
            break
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.stdout.close()
