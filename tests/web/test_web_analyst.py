"""The API behind the analyst's page: cancel (queued, ended, unknown), the sample's name and
sha256 in the history and the record, the re-run body, and the sample download's name."""

from __future__ import annotations

import hashlib
import io

from flask import Flask
from flask.testing import FlaskClient

from bubble.jobs import schema
from tests.web.helpers import jobs_of, synthetic_run
from tests.web.test_web_api import assert_error


def test_cancel_of_a_queued_run_ends_it_before_it_starts(app: Flask, client: FlaskClient) -> None:
    run_id = synthetic_run(app, 3, status=schema.QUEUED)
    jobs_of(app).store.update_run(run_id, status=schema.QUEUED)
    resp = client.delete(f"/api/runs/{run_id}")
    assert resp.status_code == 202 and resp.get_json()["status"] == "cancelled"
    rec = client.get(f"/api/runs/{run_id}").get_json()
    assert rec["status"] == "cancelled" and rec["done"] is True
    # The events so far stay, and one more says why it ended.
    events = client.get(f"/api/runs/{run_id}/events?format=json").get_json()["events"]
    assert [e["seq"] for e in events] == [1, 2, 3, 4]
    assert events[-1]["action"] == "orchestrator.cancelled"
    # A worker that picks it up later cannot claim it: the claim is a compare-and-set.
    assert not jobs_of(app).store.set_status_if(run_id, schema.QUEUED, status=schema.RUNNING)
    assert client.get(f"/api/runs/{run_id}").get_json()["status"] == "cancelled"


def test_cancel_of_an_ended_or_unknown_run_is_refused(app: Flask, client: FlaskClient) -> None:
    run_id = synthetic_run(app, 3)
    assert_error(client.delete(f"/api/runs/{run_id}"), 409, "already ended")
    assert_error(client.post(f"/api/runs/{run_id}/cancel"), 409, "already ended")
    assert_error(client.delete("/api/runs/12345678-1234-4234-9234-123456789abc"), 404, "no run")
    assert client.get(f"/api/runs/{run_id}").get_json()["status"] == "completed"


def test_history_and_record_name_the_sample_and_offer_a_rerun_body(
    app: Flask, client: FlaskClient
) -> None:
    content = b"#!/bin/sh\necho hi\n"
    up = client.post(
        "/api/uploads", data={"file": (io.BytesIO(content), 'evil "name";x.sh')}
    ).get_json()
    body = {
        "upload_id": up["id"],
        "interpreter": "/bin/sh",
        "args": "'two words' x",
        "permissions": {"network": True},
        "trace_net": True,
        "peek_tx": 32,
        "timeout": 5,
    }
    run_id = client.post("/api/runs", json=body).get_json()["id"]
    item = client.get("/api/runs").get_json()["runs"][0]
    assert item["id"] == run_id
    assert item["sample"]["sha256"] == hashlib.sha256(content).hexdigest()
    assert item["sample"]["name"] == up["name"]
    rec = client.get(f"/api/runs/{run_id}").get_json()
    assert rec["sample"]["name"] == up["name"]
    rerun = rec["rerun"]
    assert rerun["upload_id"] == up["id"] and "cmd" not in rerun
    assert rerun["interpreter"] == ["/bin/sh"] and rerun["args"] == ["two words", "x"]
    assert rerun["trace_net"] is True and rerun["peek_tx"] == 32 and rerun["timeout"] == 5
    assert rerun["permissions"] == {"fs_read": True, "fs_write": False, "network": True}
    # The body is accepted as it is: a re-run needs no new upload.
    again = client.post("/api/runs", json=rerun)
    assert again.status_code == 202
    assert client.get(f"/api/runs/{again.get_json()['id']}").get_json()["rerun"] == rerun
    # A command's re-run body carries the command as typed.
    cmd_id = client.post("/api/runs", json={"cmd": "/bin/echo 'a b'", "pidns": True}).get_json()
    cmd_rec = client.get(f"/api/runs/{cmd_id['id']}").get_json()
    assert cmd_rec["rerun"]["cmd"] == "/bin/echo 'a b'" and cmd_rec["rerun"]["pidns"] is True
    # The sample downloads under its own name, with nothing unsafe left in the header.
    dl = client.get(f"/api/uploads/{up['id']}")
    assert dl.data == content
    disposition = dl.headers["Content-Disposition"]
    assert "\r" not in disposition and "\n" not in disposition and '"name"' not in disposition
    assert "filename=evil" in disposition
    plain = client.post("/api/uploads", data={"file": (io.BytesIO(content), "my sample (1).sh")})
    dl = client.get(f"/api/uploads/{plain.get_json()['id']}")
    assert 'filename="my sample (1).sh"' in dl.headers["Content-Disposition"]
    assert_error(client.get("/api/uploads/../../etc/passwd"), 404, "")
    assert_error(client.get("/api/uploads/12345678-1234-4234-9234-123456789abc"), 404, "no upload")
