"""Ask mode through the API: the run request's `ask`/`ask_timeout`, and answers to held calls
(`POST /api/runs/<id>/decisions`) -- stored for whichever executor runs the call, on both
stores; with the real engine, an allowed held write happens and an ignored one does not."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bubble.jobs import schema
from bubble.jobs.ingest import EventSink
from bubble.jobs.store import now_iso
from tests.web.helpers import finish_run, jobs_of, synthetic_run
from tests.web.test_web_api import assert_error

ASK = {"type": "policy.ask", "pid": 7, "category": "fs", "syscall": "openat",
       "syscall_no": 257, "path": "/tmp/held", "flags": "O_WRONLY|O_CREAT"}  # fmt: skip


def held_run(app: Flask, ask_timeout_s: float = 30.0, ts: str | None = None) -> tuple[str, int]:
    """A running run whose event 2 is a held call (event 1 is a spawn)."""
    run_id = synthetic_run(app, 1, status=schema.RUNNING)
    sink = EventSink(jobs_of(app).store, jobs_of(app).hub, run_id)
    sink.seq = 1
    sink.add([{**ASK, "ask_timeout_s": ask_timeout_s, "ts": ts or now_iso()}])
    return run_id, 2


def decide(client: FlaskClient, run_id: str, body: object):
    return client.post(f"/api/runs/{run_id}/decisions", json=body)


def test_an_answer_is_stored_once_for_the_executor(app: Flask, client: FlaskClient) -> None:
    run_id, seq = held_run(app)
    resp = decide(client, run_id, {"seq": seq, "action": "allow"})
    assert resp.status_code == 202, resp.get_json()
    assert resp.get_json()["action"] == "allow"
    assert jobs_of(app).store.decisions_for(run_id, [seq]) == {seq: "allow"}
    # The first answer counts: the launcher may have acted on it already.
    assert_error(decide(client, run_id, {"seq": seq, "action": "deny"}), 409, "answered already")
    assert jobs_of(app).store.decisions_for(run_id, [seq]) == {seq: "allow"}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"seq": 2}, "action must be one of"),
        ({"seq": 2, "action": "ALLOW"}, "action must be one of"),
        ({"seq": "2", "action": "allow"}, "seq must be"),
        ({"seq": True, "action": "allow"}, "seq must be"),
        ({"seq": 0, "action": "allow"}, "seq must be"),
        ({"seq": 1 << 40, "action": "allow"}, "seq must be"),
        ({"seq": 2, "action": "allow", "why": "x"}, "unknown key 'why'"),
        ([2, "allow"], "must be a JSON object"),
    ],
)
def test_bad_answers_are_refused(app: Flask, client: FlaskClient, body, fragment) -> None:
    run_id, seq = held_run(app)
    assert_error(decide(client, run_id, body), 400, fragment)
    assert jobs_of(app).store.decisions_for(run_id, [seq]) == {}


def test_only_a_pending_held_call_of_a_running_run_is_answered(
    app: Flask, client: FlaskClient
) -> None:
    run_id, seq = held_run(app)
    missing = "00000000-0000-4000-8000-000000000000"
    assert_error(decide(client, missing, {"seq": seq, "action": "allow"}), 404, "there is no run")
    assert_error(decide(client, run_id, {"seq": 1, "action": "allow"}), 409, "not a held call")
    assert_error(decide(client, run_id, {"seq": 99, "action": "allow"}), 409, "not a held call")
    late, late_seq = held_run(app, ask_timeout_s=1.0, ts="2026-01-01T00:00:00.000Z")
    assert_error(decide(client, late, {"seq": late_seq, "action": "allow"}), 409, "timed out")
    finish_run(app, run_id)
    assert_error(decide(client, run_id, {"seq": seq, "action": "allow"}), 409, "not running")
    assert jobs_of(app).store.decisions_for(run_id, [seq]) == {}
    assert jobs_of(app).store.decisions_for(late, [late_seq]) == {}


def test_answers_need_the_same_origin(app: Flask, client: FlaskClient) -> None:
    run_id, seq = held_run(app)
    resp = client.post(
        f"/api/runs/{run_id}/decisions",
        json={"seq": seq, "action": "allow"},
        headers={"Origin": "http://evil.example"},
    )
    assert_error(resp, 403, "cross-origin")
    assert jobs_of(app).store.decisions_for(run_id, [seq]) == {}


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"ask": "yes"}, "ask must be true or false"),
        ({"ask_timeout": 5}, "ask_timeout applies to ask mode only"),
        ({"ask": True, "ask_timeout": 0}, "ask_timeout must be a positive"),
        ({"ask": True, "ask_timeout": "5"}, "ask_timeout must be a positive"),
        ({"ask": True, "ask_timeout": 100000}, "ask_timeout exceeds this server's limit"),
    ],
)
def test_bad_ask_requests_are_refused(client: FlaskClient, extra, fragment) -> None:
    assert_error(client.post("/api/runs", json={"cmd": "/bin/true", **extra}), 400, fragment)


def test_ask_reaches_the_policy_and_the_rerun(app: Flask, client: FlaskClient) -> None:
    resp = client.post("/api/runs", json={"cmd": "/bin/true", "ask": True, "ask_timeout": 3})
    assert resp.status_code == 202, resp.get_json()
    run = jobs_of(app).store.get_run(resp.get_json()["id"])
    assert run is not None
    assert run["policy"]["ask"] is True and run["policy"]["decide_timeout"] == 3.0
    rerun = client.get(f"/api/runs/{run['id']}").get_json()["rerun"]
    assert rerun["ask"] is True and rerun["ask_timeout"] == 3.0


def wait_for_ask(client: FlaskClient, run_id: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = client.get(f"/api/runs/{run_id}/events?format=json").get_json()["events"]
        asked = [e for e in events if e["type"] == "policy.ask"]
        if asked:
            return asked[0]
        time.sleep(0.05)
    raise AssertionError(f"no policy.ask in run {run_id}")


def wait_end(client: FlaskClient, run_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rec = client.get(f"/api/runs/{run_id}").get_json()
        if rec["done"]:
            return rec
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not end")


@pytest.mark.usefixtures("engine")
def test_allowed_write_happens_and_an_ignored_one_does_not(
    app: Flask, client: FlaskClient, reachable_box: Path
) -> None:
    box = reachable_box  # the target may run as nobody
    cmd = ["/bin/sh", "-c", f"echo yes > {box}/allowed; echo no > {box}/ignored; echo end"]
    # Through the fork server (the default): the decision socket must reach the launcher it
    # forks as it reaches a cold one (the scale-out test covers a worker's).
    executor = jobs_of(app).executor
    fork = executor.runner.forkserver if executor else None
    assert fork is not None and fork.wait_ready(60)
    resp = client.post("/api/runs", json={"cmd": cmd, "ask": True, "ask_timeout": 3})
    run_id = resp.get_json()["id"]
    ask = wait_for_ask(client, run_id)
    assert ask["path"] == f"{box}/allowed" and ask["ask_timeout_s"] == 3.0
    assert decide(client, run_id, {"seq": ask["seq"], "action": "allow"}).status_code == 202
    rec = wait_end(client, run_id)
    assert rec["status"] == "completed", rec
    assert fork.forked == 1
    assert (box / "allowed").read_text() == "yes\n"
    assert not (box / "ignored").exists()  # nobody answered: denied after 3 s
    events = client.get(f"/api/runs/{run_id}/events?format=json").get_json()["events"]
    finals = [(e["type"], e.get("path"), e.get("reason")) for e in events
              if e["type"] in ("policy.allow", "policy.alert")]  # fmt: skip
    assert finals == [
        ("policy.allow", f"{box}/allowed", None),
        ("policy.alert", f"{box}/ignored", "fail-closed"),
    ], finals
