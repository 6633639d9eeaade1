"""API contract through the Flask test client: validation, the error shape, history,
JSON event paging, artifacts and uploads -- over a real SQLite file."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from bubble.jobs import schema
from tests.web.helpers import finish_run, jobs_of, make_app, synthetic_run


def assert_error(resp, status: int, fragment: str) -> dict:
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json()
    assert set(body) == {"error", "hint"}, body
    assert fragment in body["error"], body
    assert body["hint"], body
    return body


def blob_ids(app: Flask) -> list[str]:
    with jobs_of(app).store.engine.connect() as conn:
        return [r[0] for r in conn.execute(select(schema.blobs.c.id))]


def nothing_written(app: Flask, data_dir: Path) -> None:
    """No run row or work folder was created."""
    assert jobs_of(app).store.list_runs(10) == []
    assert list(jobs_of(app).layout.work.iterdir()) == []


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"cmd": "/bin/true", "bogus": 1}, "unknown key 'bogus'"),
        ({"cmd": "/bin/true", "permissions": {"fs_exec": True}}, "unknown permission 'fs_exec'"),
        ({"cmd": "/bin/true", "permissions": {"fs_read": False}}, "reads cannot be denied"),
        (
            {"cmd": "/bin/true", "permissions": {"network": "yes"}},
            'network must be true, false or "sim"',
        ),
        ({"cmd": "/bin/true", "permissions": []}, "permissions must be an object"),
        ({"cmd": ""}, "the command is empty"),
        ({"cmd": "   "}, "the command is empty"),
        ({"cmd": []}, "the command is empty"),
        ({}, "the command is empty"),
        ({"cmd": 42}, "cmd must be a string or a list"),
        ({"cmd": ["/bin/echo", 1]}, "cmd must be a string or a list"),
        ({"cmd": "echo 'unbalanced"}, "cannot be split"),
        ({"cmd": "/bin/true", "timeout": 0}, "timeout must be a positive"),
        ({"cmd": "/bin/true", "timeout": "5"}, "timeout must be a positive"),
        ({"cmd": "/bin/true", "timeout": 100000}, "exceeds this server's limit"),
        ({"cmd": "/bin/true", "notify_exec": "true"}, "notify_exec must be true or false"),
        ({"cmd": "/bin/true", "interpreter": "/bin/sh"}, "interpreter applies to uploads"),
        ({"uploaded_path": "/etc/passwd"}, "not one of our uploads"),
        ({"uploaded_path": "../uploads/x"}, "not one of our uploads"),
        ({"upload_id": "12345678-1234-1234-1234-123456789abc"}, "there is no upload"),
        ({"cmd": "/bin/true", "peek_tx": 64}, "--peek-tx needs --trace-net"),
        ({"cmd": "/bin/true", "trace_net": True}, "the network is denied"),
    ],
)
def test_bad_run_requests_are_refused_and_write_nothing(
    app: Flask, client: FlaskClient, data_dir: Path, body: dict, fragment: str
) -> None:
    assert_error(client.post("/api/runs", json=body), 400, fragment)
    nothing_written(app, data_dir)


def test_bad_json_and_wrong_content_type(app: Flask, client: FlaskClient, data_dir: Path) -> None:
    headers = {"Content-Type": "application/json"}
    assert_error(client.post("/api/runs", data="{nope", headers=headers), 400, "not valid JSON")
    assert_error(client.post("/api/runs", data="[1]", headers=headers), 400, "JSON object")
    assert_error(client.post("/api/runs", data="cmd=ls"), 415, "must be JSON")
    assert_error(client.post("/run", data="{nope", headers=headers), 400, "not valid JSON")
    nothing_written(app, data_dir)


def test_unknown_urls_ids_and_methods_use_the_error_shape(client: FlaskClient) -> None:
    assert_error(client.get("/api/runs/not-a-run"), 404, "no run")
    assert_error(client.get("/api/runs/12345678-1234-1234-1234-123456789abc"), 404, "no run")
    assert_error(client.get("/api/nothing"), 404, "not found")
    assert_error(client.delete("/api/runs"), 405, "not allowed")
    assert_error(client.get("/api/runs?limit=x"), 400, "whole number")
    # A permalink of a missing run is a page (404) that says so, not raw JSON.
    page = client.get("/runs/12345678-1234-1234-1234-123456789abc")
    assert page.status_code == 404 and page.mimetype == "text/html"
    assert 'data-missing="12345678-1234-1234-1234-123456789abc"' in page.get_data(as_text=True)


def test_history_is_newest_first_and_paginated(app: Flask, client: FlaskClient) -> None:
    ids = [synthetic_run(app, 3) for _ in range(7)]
    seen: list[str] = []
    url = "/api/runs?limit=3"
    while url:
        page = client.get(url).get_json()
        assert len(page["runs"]) <= 3
        seen += [r["id"] for r in page["runs"]]
        url = page["next"]
    assert seen == ids[::-1]
    first = client.get("/api/runs?limit=1").get_json()["runs"][0]
    assert first["links"]["page"] == f"/runs/{ids[-1]}"
    assert first["status"] == "completed"


def test_events_as_json_pages_after_n(app: Flask, client: FlaskClient) -> None:
    run_id = synthetic_run(app, 2500)
    got: list[int] = []
    after = 0
    while True:
        page = client.get(f"/api/runs/{run_id}/events?after={after}&format=json").get_json()
        got += [e["seq"] for e in page["events"]]
        after = page["next_after"]
        if page["done"]:
            break
    assert got == list(range(1, 2501))
    assert page["status"] == "completed"
    # `after` without format=json and without an SSE Accept header also answers JSON
    page = client.get(f"/api/runs/{run_id}/events?after=2499").get_json()
    assert [e["type"] for e in page["events"]] == ["process.exit"]
    assert_error(client.get(f"/api/runs/{run_id}/events?after=-1"), 400, "negative")
    assert_error(client.get(f"/api/runs/{run_id}/events?format=xml"), 400, "unknown format")


def test_run_record_counts_a_live_run_from_its_events(app: Flask, client: FlaskClient) -> None:
    run_id = synthetic_run(app, 100, status=schema.RUNNING)
    rec = client.get(f"/api/runs/{run_id}").get_json()
    assert rec["status"] == "running" and not rec["done"]
    assert rec["counts"]["alerts"] == rec["counts"]["fs"] == 10
    assert rec["counts"]["events"] == 100
    assert rec["links"]["events"] == f"/api/runs/{run_id}/events"
    finish_run(app, run_id)
    assert client.get(f"/api/runs/{run_id}").get_json()["done"]


def test_upload_is_stored_by_id_with_sha256_and_shebang_hint(
    app: Flask, client: FlaskClient, data_dir: Path
) -> None:
    content = b"#!/usr/bin/env python3\nprint('hi')\n"
    resp = client.post("/api/uploads", data={"file": (io.BytesIO(content), "../../evil name.py")})
    assert resp.status_code == 201
    body = resp.get_json()
    assert body["sha256"] == hashlib.sha256(content).hexdigest()
    assert body["size"] == len(content)
    assert body["type"] == "script" and body["executable"] is True
    assert body["interpreter"] == "/usr/bin/env python3"
    assert body["name"] == "evil name.py"  # display only
    assert jobs_of(app).store.get_blob(body["id"]) == content
    assert blob_ids(app) == [body["id"]]

    data = client.post("/api/uploads", data={"file": (io.BytesIO(b"just data"), "d.txt")})
    assert data.get_json()["executable"] is False and data.get_json()["type"] == "data"
    elf = client.post("/api/uploads", data={"file": (io.BytesIO(b"\x7fELF\x02\x01"), "a.out")})
    assert elf.get_json()["type"] == "elf"


def test_upload_refusals_leave_nothing_behind(tmp_path: Path) -> None:
    app = make_app(tmp_path / "d", MAX_UPLOAD=1000)
    try:
        client = app.test_client()
        assert_error(client.post("/api/uploads", data={}), 400, "no file")
        big = {"file": (io.BytesIO(b"x" * 5000), "big.bin")}
        assert_error(client.post("/api/uploads", data=big), 413, "")
        # Within the multipart allowance but over the file limit: refused by our check.
        nearly = {"file": (io.BytesIO(b"x" * 1500), "big.bin")}
        assert_error(client.post("/api/uploads", data=nearly), 413, "larger than 1000 bytes")
        assert blob_ids(app) == []
        # A data file without an interpreter cannot be run.
        up = client.post("/api/uploads", data={"file": (io.BytesIO(b"data"), "d")}).get_json()
        assert_error(client.post("/api/runs", json={"upload_id": up["id"]}), 400, "neither")
    finally:
        from bubble.web import shutdown

        shutdown(app)


def test_seed_upload_answers_path_and_interpreter(client: FlaskClient) -> None:
    resp = client.post("/upload", data={"file": (io.BytesIO(b"#!/bin/sh\necho hi\n"), "s.sh")})
    body = resp.get_json()
    assert body["path"] == body["id"] and body["interpreter"] == "/bin/sh"


def test_artifacts_download_by_id_under_our_name(app: Flask, client: FlaskClient) -> None:
    run_id = synthetic_run(app, 5, stdout=b"hello\n")
    jobs = jobs_of(app)
    art = {"id": "0a843358-c476-4720-b39f-00d02db5514c", "run_id": run_id, "kind": "stdout"}
    art |= {"name": "stdout.txt", "path": None}
    art |= {"size": 6, "sha256": hashlib.sha256(b"hello\n").hexdigest(), "created_at": "x"}
    jobs.store.add_artifacts([art])
    resp = client.get(f"/api/runs/{run_id}/artifacts/{art['id']}")
    assert resp.status_code == 200 and resp.data == b"hello\n"
    assert resp.headers["Content-Disposition"] == f'attachment; filename="{run_id}.stdout.txt"'
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    resp.close()
    other = synthetic_run(app, 1)
    assert_error(client.get(f"/api/runs/{other}/artifacts/{art['id']}"), 404, "no artifact")
    assert_error(client.get(f"/api/runs/{run_id}/artifacts/..%2Fbubble.db"), 404, "")


def test_events_artifact_mirrors_the_store(app: Flask, client: FlaskClient) -> None:
    run_id = synthetic_run(app, 50)
    jobs = jobs_of(app)
    art = {"id": "1a843358-c476-4720-b39f-00d02db5514c", "run_id": run_id, "kind": "events"}
    art |= {"name": "events.ndjson", "path": None, "size": 0, "sha256": "", "created_at": "x"}
    jobs.store.add_artifacts([art])
    lines = client.get(f"/api/runs/{run_id}/artifacts/{art['id']}").data.decode().splitlines()
    assert lines == [data for _, data in jobs.store.iter_events(run_id)]
    assert [json.loads(line)["seq"] for line in lines] == list(range(1, 51))
