"""`GET /api/runs/<id>/report`: the behaviour report of a stored run (JSON, or ECS NDJSON as
a download), from the same analysis module as `bubble report`; and the issue's sample end to
end through a real `bubble serve`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from bubble.analysis import report
from bubble.jobs import schema
from bubble.jobs.ingest import EventSink
from bubble.jobs.store import new_id, now_iso
from tests import behaviour_sample
from tests.conftest import AS_ROOT
from tests.web.helpers import ServeProcess, jobs_of, wait_done

FIXTURE = Path(__file__).resolve().parents[1] / "unit" / "fixtures" / "behaviour.ndjson"


def stored_run(app: Flask, events: list[dict]) -> str:
    """A finished run written straight into the store with `events`."""
    jobs = jobs_of(app)
    run_id = new_id()
    jobs.store.create_run(
        {
            "id": run_id,
            "status": schema.RUNNING,
            "created_at": now_iso(),
            "started_at": now_iso(),
            "command": ["/tmp/rep/sample2.sh"],
            "policy": {"deny_fs": True, "notify_exec": True},
            "timeout": 8.0,
            "timed_out": False,
            "last_seq": 0,
        }
    )
    sink = EventSink(jobs.store, jobs.hub, run_id)
    sink.add([{k: v for k, v in e.items() if k != "seq"} for e in events])
    jobs.store.update_run(run_id, status=schema.COMPLETED, last_seq=len(events))
    return run_id


def test_report_json_matches_the_cli_module(app: Flask, client: FlaskClient) -> None:
    events = list(report.read_ndjson(FIXTURE))
    run_id = stored_run(app, events)
    resp = client.get(f"/api/runs/{run_id}/report")
    assert resp.status_code == 200 and resp.is_json
    rep = resp.get_json()
    direct = report.build(events)
    assert rep["signatures"] == direct["signatures"]
    assert rep["processes"] == direct["processes"]
    assert rep["run"]["id"] == run_id and rep["run"]["policy"]["notify_exec"] is True
    attacks = {a for s in rep["signatures"] for a in s["attack"]}
    assert {"T1098.004", "T1053.003", "T1222.002", "T1070.002"} <= attacks


def test_report_ecs_is_a_download_of_one_document_per_event(
    app: Flask, client: FlaskClient
) -> None:
    events = list(report.read_ndjson(FIXTURE))
    run_id = stored_run(app, events)
    resp = client.get(f"/api/runs/{run_id}/report?format=ecs")
    assert resp.status_code == 200
    assert resp.headers["Content-Disposition"] == f'attachment; filename="{run_id}.ecs.ndjson"'
    assert resp.mimetype == "application/x-ndjson"
    docs = [json.loads(line) for line in resp.get_data(as_text=True).splitlines()]
    assert [d["event"]["sequence"] for d in docs] == [e["seq"] for e in events]


def test_report_errors_have_the_one_shape(app: Flask, client: FlaskClient) -> None:
    run_id = stored_run(app, list(report.read_ndjson(FIXTURE)))
    bad = client.get(f"/api/runs/{run_id}/report?format=xml")
    assert bad.status_code == 400 and set(bad.get_json()) == {"error", "hint"}
    missing = client.get(f"/api/runs/{new_id()}/report")
    assert missing.status_code == 404 and missing.get_json()["hint"]


def test_user_rules_setting_reaches_the_report(data_dir: Path, tmp_path: Path) -> None:
    from bubble.web import create_app, shutdown

    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "chmod.yml").write_text(
        "title: Any chmod\nname: local_chmod\nlogsource: {product: linux, category: file_change}\n"
        "detection: {sel: {Operation|startswith: chmod}, sel2: {Operation|startswith: fchmod},"
        " condition: sel or sel2}\nlevel: low\n"
    )
    (rules / "broken.yml").write_text("title: x\n")
    app = create_app({"DATA_DIR": str(data_dir), "WORKERS": 1, "RULES": [str(rules)]})
    try:
        run_id = stored_run(app, list(report.read_ndjson(FIXTURE)))
        rep = app.test_client().get(f"/api/runs/{run_id}/report").get_json()
        assert "local_chmod" in {s["id"] for s in rep["signatures"]}
        assert {Path(e["file"]).name for e in rep["rule_errors"]} == {"broken.yml"}
    finally:
        shutdown(app)


@pytest.fixture
def served(data_dir: Path) -> Iterator[ServeProcess]:
    server = ServeProcess(data_dir)
    yield server
    server.stop()


@pytest.mark.usefixtures("engine")
@pytest.mark.skipif(not AS_ROOT, reason="process.end needs root (the process connector)")
def test_done_when_sample_through_the_web_api(served: ServeProcess) -> None:
    with behaviour_sample.sample() as sample:
        body = {"cmd": [str(sample.script)], "permissions": {"network": True}, "trace_net": True}
        resp = requests.post(f"{served.url}/api/runs", json=body, timeout=10)
        run_id = resp.json()["id"]
        wait_done(served.url, run_id)
        rep = requests.get(f"{served.url}/api/runs/{run_id}/report", timeout=30).json()
    nodes = behaviour_sample.all_processes(rep)
    assert any(n["signal_name"] == "SIGSEGV" for n in nodes) and len(nodes) == 5
    hits = {a: s["events"] for s in rep["signatures"] for a in s["attack"]}
    assert set(hits) >= behaviour_sample.ATTACK
    assert rep["network"]["endpoints"][0]["peer"] == "127.0.0.1"
    ecs = requests.get(f"{served.url}/api/runs/{run_id}/report?format=ecs", timeout=30)
    assert ecs.headers["Content-Disposition"].startswith("attachment;")
    assert any("rule" in json.loads(x) for x in ecs.text.splitlines())


@pytest.mark.usefixtures("engine")
def test_launcher_error_is_a_typed_event_with_its_hint(served: ServeProcess) -> None:
    resp = requests.post(f"{served.url}/api/runs", json={"cmd": ["/nonexistent/prog"]}, timeout=10)
    run_id = resp.json()["id"]
    rec = wait_done(served.url, run_id)
    assert rec["status"] == "failed" and rec["exit_code"] == 127
    url = f"{served.url}/api/runs/{run_id}/events?format=json&after=0"
    events = requests.get(url, timeout=10).json()["events"]
    (err,) = [e for e in events if e["type"] == "run.error"]
    assert err["message"] == "/nonexistent/prog: no such file" and err["hint"] == rec["hint"]
    assert err["status"] == 127
    rep = requests.get(f"{served.url}/api/runs/{run_id}/report", timeout=10).json()
    assert rep["run"]["errors"] == [{"message": err["message"], "hint": err["hint"]}]
