"""Runs queued in Redis by `bubble serve` and executed by `bubble worker` processes, with
PostgreSQL as the shared store: the unchanged API and SSE streams serve their results."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import requests

from tests.web.helpers import SSEClient, wait_done

pytestmark = pytest.mark.usefixtures("engine")

# Three denied writes, one line of output, and long enough that one worker cannot take all.
SCRIPT = "for i in 1 2 3; do echo x > denied$i; done; echo out-$0; sleep 0.6"


def post(base: str, **body: object) -> str:
    resp = requests.post(f"{base}/api/runs", json=body, timeout=10)
    assert resp.status_code == 202, resp.text
    return resp.json()["id"]


def sse_events(base: str, run_id: str) -> list[dict]:
    out = []
    for msg in SSEClient(f"{base}/api/runs/{run_id}/events").messages(timeout=60):
        if msg.event == "end":
            return out
        out.append(json.loads(msg.data))
    raise AssertionError("the stream ended without `end`")


def sse_output(base: str, run_id: str) -> str:
    """The run's stdout as the output stream serves it."""
    text = ""
    for msg in SSEClient(f"{base}/api/runs/{run_id}/output").messages(timeout=60):
        if msg.event == "end":
            return text
        if msg.event == "stdout":
            text += json.loads(msg.data)["text"]
    raise AssertionError("the stream ended without `end`")


def test_two_workers_share_ten_runs_and_the_api_serves_everything(cluster) -> None:
    server, start = cluster
    start("w1")
    start("w2")
    assert requests.get(f"{server.url}/api/health", timeout=5).json()["queue"] == "redis"
    ids = [post(server.url, cmd=["/bin/sh", "-c", SCRIPT, str(i)]) for i in range(10)]
    records = [wait_done(server.url, run_id, timeout=120) for run_id in ids]
    assert [r["status"] for r in records] == ["completed"] * 10, records
    assert {r["worker"] for r in records} == {"w1", "w2"}
    for i, (run_id, rec) in enumerate(zip(ids, records, strict=True)):
        assert rec["counts"]["fs"] == 3 and rec["exit_code"] == 0
        events = sse_events(server.url, run_id)
        assert [e["seq"] for e in events] == list(range(1, rec["last_seq"] + 1))
        assert sum(e["type"] == "policy.alert" for e in events) == 3
        assert any(e["type"] == "process.exit" for e in events)
        assert sse_output(server.url, run_id) == f"out-{i}\n"
        stdout = next(a for a in rec["artifacts"] if a["kind"] == "stdout")
        body = requests.get(server.url + stdout["url"], timeout=10).content
        assert body == f"out-{i}\n".encode()


def _descendants(pid: int) -> set[int]:
    """Every process below `pid`, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_status(base: str, run_id: str, status: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        rec = requests.get(f"{base}/api/runs/{run_id}", timeout=5).json()
        if rec["status"] == status or time.monotonic() > deadline:
            return rec
        time.sleep(0.1)


def test_a_killed_workers_run_fails_naming_it_and_leaves_nothing_running(cluster) -> None:
    server, start = cluster
    worker = start("doomed")
    run_id = post(server.url, cmd=["/bin/sh", "-c", "echo started; exec sleep 120"], timeout=200)
    rec = _wait_status(server.url, run_id, "running", 60)
    assert rec["status"] == "running" and rec["worker"] == "doomed"
    deadline = time.monotonic() + 30
    while "started" not in sse_output_now(server.url, run_id):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    below = _descendants(worker.pid)
    assert any(Path(f"/proc/{p}/cmdline").read_bytes().startswith(b"sleep") for p in below)
    worker.stop(signal.SIGKILL)
    # Heartbeats every 0.5 s, stale after 4 s, swept every second: well within 30 s.
    rec = _wait_status(server.url, run_id, "failed", 30)
    assert rec["status"] == "failed", rec
    assert "doomed" in rec["error"] and "heartbeat" in rec["error"]
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in below) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in below if _alive(p)]


def sse_output_now(base: str, run_id: str) -> str:
    """What stdout holds so far (one JSON page of the output stream is not available:
    read the artifact-free way, through the run's output SSE until it idles)."""
    url = f"{base}/api/runs/{run_id}/output"
    with requests.get(url, headers={"Accept": "text/event-stream"}, stream=True, timeout=3) as r:
        try:
            for chunk in r.iter_content(chunk_size=None):
                if b"event: stdout" in chunk:
                    return chunk.decode()
        except requests.RequestException:
            return ""
    return ""


def test_sigterm_lets_the_worker_finish_its_run(cluster) -> None:
    server, start = cluster
    worker = start("polite")
    run_id = post(server.url, cmd=["/bin/sh", "-c", "sleep 2; echo finished"])
    rec = _wait_status(server.url, run_id, "running", 60)
    assert rec["status"] == "running"
    assert worker.stop(signal.SIGTERM) == 0
    rec = wait_done(server.url, run_id, timeout=30)
    assert rec["status"] == "completed" and rec["worker"] == "polite"
    assert sse_output(server.url, run_id) == "finished\n"


def test_cancel_on_the_web_stops_the_run_on_its_worker(cluster) -> None:
    server, start = cluster
    worker = start("busy")
    run_id = post(server.url, cmd=["/bin/sh", "-c", "exec sleep 120"], timeout=200)
    assert _wait_status(server.url, run_id, "running", 60)["status"] == "running"
    below = _descendants(worker.pid)
    assert requests.delete(f"{server.url}/api/runs/{run_id}", timeout=10).status_code == 202
    rec = wait_done(server.url, run_id, timeout=30)
    assert rec["status"] == "cancelled" and rec["worker"] == "busy", rec
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in below) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in below if _alive(p)]
    assert worker.proc.poll() is None  # the worker goes on


def test_an_analysts_answer_reaches_a_run_on_a_worker(cluster, reachable_box: Path) -> None:
    """Ask mode across processes: the web server only writes the answer to the store; the
    worker executing the run reads it there and lets the held write happen."""
    server, start = cluster
    start("asker")
    box = reachable_box  # the target may run as nobody
    script = f"echo yes > {box}/allowed; echo end"
    run_id = post(server.url, cmd=["/bin/sh", "-c", script], ask=True, ask_timeout=20)
    deadline = time.monotonic() + 60
    asked: list[dict] = []
    while not asked and time.monotonic() < deadline:
        page = requests.get(f"{server.url}/api/runs/{run_id}/events?format=json", timeout=10)
        asked = [e for e in page.json()["events"] if e["type"] == "policy.ask"]
        time.sleep(0.05)
    assert asked, "no held call"
    assert not (box / "allowed").exists()
    answer = {"seq": asked[0]["seq"], "action": "allow"}
    resp = requests.post(f"{server.url}/api/runs/{run_id}/decisions", json=answer, timeout=10)
    assert resp.status_code == 202, resp.text
    rec = wait_done(server.url, run_id, timeout=60)
    assert rec["status"] == "completed" and rec["worker"] == "asker", rec
    assert (box / "allowed").read_text() == "yes\n"
