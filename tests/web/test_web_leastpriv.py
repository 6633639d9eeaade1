"""The least-privilege loop through the API: a run request's scoped `policy` (object or
TOML text, strict), kept in the record and in its re-run body; `GET /api/runs/<id>/policy/
suggest` on a real denied run gives a policy under which the re-run has no alert (the file
is on disk, the loopback listener got the bytes); `GET /api/diff` lists what changed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bubble.web import shutdown
from tests.web.helpers import jobs_of, make_app
from tests.web.probe import Listener
from tests.web.test_web_api import assert_error


@pytest.fixture
def sqlite_app(tmp_path: Path) -> Iterator[Flask]:
    app = make_app(tmp_path / "data")
    yield app
    shutdown(app)


def run_and_wait(app: Flask, client: FlaskClient, body: dict) -> dict:
    resp = client.post("/api/runs", json=body)
    assert resp.status_code == 202, resp.get_json()
    run_id = resp.get_json()["id"]
    assert jobs_of(app).wait(run_id, 60) == "completed"
    return client.get(f"/api/runs/{run_id}").get_json()


SCOPED = {"fs": {"write": ["/tmp/../tmp/x/.."]}, "net": {"connect": ["127.0.0.1:80"]}}


def test_a_scoped_policy_reaches_the_record_and_its_rerun(app: Flask, client: FlaskClient) -> None:
    resp = client.post("/api/runs", json={"cmd": "/bin/true", "policy": SCOPED, "pidns": True})
    assert resp.status_code == 202, resp.get_json()
    run_id = resp.get_json()["id"]
    stored = jobs_of(app).store.get_run(run_id)
    assert stored is not None
    assert stored["policy"]["write"] == ["/tmp"] and stored["policy"]["connect"] == ["127.0.0.1:80"]
    rec = client.get(f"/api/runs/{run_id}").get_json()
    want = {"fs": {"write": ["/tmp"]}, "net": {"connect": ["127.0.0.1:80"]}}
    assert rec["policy"]["scopes"] == want
    assert rec["rerun"]["policy"] == want and rec["rerun"]["pidns"] is True
    again = client.post("/api/runs", json=rec["rerun"])
    assert again.status_code == 202, again.get_json()
    assert client.get(f"/api/runs/{again.get_json()['id']}").get_json()["rerun"] == rec["rerun"]
    # The same policy as the page's TOML text.
    text = '[fs]\nwrite = ["/tmp"]  # why\n[net]\nconnect = ["127.0.0.1:80"]\n'
    third = client.post("/api/runs", json={"cmd": "/bin/true", "policy": text, "pidns": True})
    rerun = client.get(f"/api/runs/{third.get_json()['id']}").get_json()["rerun"]
    assert rerun["policy"] == want
    # A run without scopes says so with an empty object, and its re-run body has none.
    plain = client.post("/api/runs", json={"cmd": "/bin/true"}).get_json()["id"]
    plain_rec = client.get(f"/api/runs/{plain}").get_json()
    assert plain_rec["policy"]["scopes"] == {} and "policy" not in plain_rec["rerun"]


@pytest.mark.parametrize(
    ("policy", "extra", "fragment"),
    [
        ("[fs]\nwrite = [", {}, "the policy is not valid TOML"),
        ({"fs": {"write": ["/tmp"], "read": ["/"]}}, {}, "unknown key 'read'"),
        ('[net]\nconnect = ["127.0.0.1:80"]', {"permissions": {"network": True}},
         "connect scopes narrow a denied network"),
        ({"fs": {"write": ["/tmp"]}}, {"permissions": {"fs_write": "overlay"}},
         "write scopes mean nothing under --fs-overlay"),
        (7, {}, "a policy must be a table/object"),
    ],
)  # fmt: skip
def test_a_bad_policy_is_refused_and_nothing_starts(
    app: Flask, client: FlaskClient, policy: object, extra: dict, fragment: str
) -> None:
    resp = client.post("/api/runs", json={"cmd": "/bin/true", "policy": policy, **extra})
    assert_error(resp, 400, fragment)
    assert client.get("/api/runs").get_json()["runs"] == []


def test_suggest_and_diff_need_runs_that_exist(app: Flask, client: FlaskClient) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    assert_error(client.get(f"/api/runs/{missing}/policy/suggest"), 404, "there is no run")
    assert_error(client.get("/api/diff?a=" + missing), 400, "b is missing")
    assert_error(client.get(f"/api/diff?a={missing}&b={missing}"), 404, "there is no run")


@pytest.mark.usefixtures("engine")
def test_suggest_then_rerun_has_no_alert_and_diff_shows_the_change(
    sqlite_app: Flask, box: Path, listener: Listener
) -> None:
    client = sqlite_app.test_client()
    cmd = f"/usr/bin/python3 {box / 'probe.py'} {box / 'out'} {listener.port}"
    first = run_and_wait(sqlite_app, client, {"cmd": cmd})
    assert first["counts"]["alerts"] == 2
    assert not (box / "out" / "made.txt").exists() and listener.got == []
    sug = client.get(f"/api/runs/{first['id']}/policy/suggest").get_json()
    endpoint = f"127.0.0.1:{listener.port}"
    assert sug["policy"] == {"fs": {"write": [str(box / "out")]}, "net": {"connect": [endpoint]}}
    assert sug["scopes"] == 2
    assert "denied write: openat " + str(box / "out" / "made.txt") in sug["toml"]
    assert "denied connect: connect " + endpoint in sug["toml"]
    # The re-run: the run's own body with the suggested TOML, as the page posts it.
    second = run_and_wait(sqlite_app, client, {**first["rerun"], "policy": sug["toml"]})
    assert second["counts"]["alerts"] == 0, second["counts"]
    assert (box / "out" / "made.txt").read_text() == "made\n"
    assert listener.got == [b"ping"]
    assert second["policy"]["scopes"] == sug["policy"]
    # Nothing more to suggest for the re-run.
    assert client.get(f"/api/runs/{second['id']}/policy/suggest").get_json()["scopes"] == 0
    diff = client.get(f"/api/diff?a={first['id']}&b={second['id']}").get_json()
    changed = {
        (c["operation"], c["a"]["decisions"][0], c["b"]["decisions"][0]) for c in diff["changed"]
    }
    assert {("openat", "denied", "allowed"), ("connect", "denied", "allowed")} <= changed
    assert diff["counts"]["changed"] == len(diff["changed"])
    assert diff["a"]["id"] == first["id"] and diff["b"]["command_line"] == cmd
