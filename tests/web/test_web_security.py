"""Security defaults: headers, Host/Origin checks, the access token, restart recovery."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bubble.errors import UsageError
from bubble.jobs import schema
from bubble.web import shutdown
from bubble.web.security import COOKIE, FAILURES_PER_CLIENT
from tests.web.helpers import jobs_of, make_app, synthetic_run
from tests.web.test_web_api import assert_error

TOKEN = "correct-horse-battery-staple"
STATIC = Path(__file__).resolve().parents[2] / "src" / "bubble" / "web" / "static"


def test_every_response_carries_the_security_headers(client: FlaskClient) -> None:
    for path in ("/", "/api/runs", "/static/bubble.js", "/api/nothing"):
        resp = client.get(path)
        csp = resp.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
        assert "frame-ancestors 'none'" in csp
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["X-Frame-Options"] == "DENY"
        resp.close()


def test_page_has_no_inline_script_or_style(client: FlaskClient) -> None:
    html = client.get("/").get_data(as_text=True)
    assert "<script>" not in html and "<style" not in html and " style=" not in html
    assert not re.search(r"\son[a-z]+\s*=", html)  # no onclick= / onload= handlers
    js = "".join(
        client.get(f"/static/{name}").get_data(as_text=True)
        for name in sorted(p.name for p in STATIC.glob("*.js"))
    )
    assert "renderDiff" in js  # every module is read, the new ones too
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"):
        assert sink not in js


def test_foreign_host_header_is_refused(client: FlaskClient) -> None:
    # DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends its own Host.
    assert_error(client.get("/api/runs", headers={"Host": "evil.example"}), 403, "host")
    assert client.get("/api/runs", headers={"Host": "127.0.0.1:8090"}).status_code == 200
    assert client.get("/api/runs", headers={"Host": "[::1]:8090"}).status_code == 200


def test_cross_origin_state_changes_are_refused(app: Flask, client: FlaskClient) -> None:
    body = {"cmd": "/bin/true"}
    evil = {"Origin": "http://evil.example"}
    assert_error(client.post("/api/runs", json=body, headers=evil), 403, "cross-origin")
    assert_error(client.post("/api/runs", json=body, headers={"Origin": "null"}), 403, "")
    site = {"Sec-Fetch-Site": "cross-site"}
    assert_error(client.post("/api/uploads", headers=site), 403, "cross-site")
    assert jobs_of(app).store.list_runs(5) == []
    # Same origin passes the check (and then fails validation, proving it got through).
    same = {"Origin": "http://localhost"}
    assert_error(client.post("/api/runs", json={}, headers=same), 400, "command is empty")
    # Reads are not state-changing: a foreign Origin may not matter for GET.
    assert client.get("/api/runs", headers=evil).status_code == 200


def test_token_guards_api_and_page(tmp_path: Path) -> None:
    app = make_app(tmp_path / "d", TOKEN=TOKEN, ALLOWED_HOSTS=None)
    try:
        client = app.test_client()
        assert_error(client.get("/api/runs"), 401, "access token")
        assert_error(client.get("/api/runs", headers={"Authorization": "Bearer nope"}), 401, "")
        ok = client.get("/api/runs", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200
        page = client.get("/")
        assert page.status_code == 303 and page.headers["Location"].endswith("/login")
        assert client.get("/login").status_code == 200
        assert client.post("/login", data={"token": "wrong"}).status_code == 401
        login = client.post("/login", data={"token": TOKEN})
        assert login.status_code == 303
        cookie = login.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        # The test client keeps the cookie: page and API now work.
        assert client.get("/").status_code == 200
        assert client.get("/api/runs").status_code == 200
    finally:
        shutdown(app)


def test_restart_keeps_finished_runs_and_interrupts_those_in_flight(tmp_path: Path) -> None:
    data = tmp_path / "d"
    app = make_app(data)
    done = synthetic_run(app, 20)
    flying = synthetic_run(app, 7, status=schema.RUNNING)
    jobs_of(app).store.close()  # a crash: no shutdown, nothing recorded on the way out

    again = make_app(data)
    try:
        client = again.test_client()
        finished = client.get(f"/api/runs/{done}").get_json()
        assert finished["status"] == "completed" and finished["last_seq"] == 20
        rec = client.get(f"/api/runs/{flying}").get_json()
        assert rec["status"] == "interrupted" and rec["done"]
        assert "in flight" in rec["error"]
        page = client.get(f"/api/runs/{flying}/events?after=0&format=json").get_json()
        assert [e["seq"] for e in page["events"]] == list(range(1, 9))
        assert page["events"][-1]["action"] == "orchestrator.interrupted"
        assert page["done"]
    finally:
        shutdown(again)
        shutdown(app)


def test_a_short_token_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="at least 16 characters"):
        make_app(tmp_path / "d", TOKEN="x" * 15)


def _token_app(tmp_path: Path) -> Flask:
    return make_app(tmp_path / "d", TOKEN=TOKEN, ALLOWED_HOSTS=None)


def test_login_accepts_origin_null_only_from_its_own_form(tmp_path: Path) -> None:
    """Chromium posts a form with `Origin: null` under some referrer policies; /login takes
    that when the browser marks the request same-origin, and nothing else does."""
    app = _token_app(tmp_path)
    try:
        client = app.test_client()
        null_same = {"Origin": "null", "Sec-Fetch-Site": "same-origin"}
        null_cross = {"Origin": "null", "Sec-Fetch-Site": "cross-site"}
        assert_error(client.post("/login", data={"token": TOKEN}, headers=null_cross), 403, "")
        assert_error(
            client.post("/login", data={"token": TOKEN}, headers={"Origin": "null"}), 403, ""
        )
        ok = client.post("/login", data={"token": TOKEN}, headers=null_same)
        assert ok.status_code == 303 and COOKIE in ok.headers["Set-Cookie"]
        # Logged in now, yet a state change with Origin: null is still refused.
        resp = client.post("/api/runs", json={"cmd": "/bin/true"}, headers=null_same)
        assert_error(resp, 403, "cross-origin")
        assert jobs_of(app).store.list_runs(5) == []
        assert client.get("/login").headers["Referrer-Policy"] == "same-origin"
    finally:
        shutdown(app)


def test_wrong_tokens_are_rate_limited_per_client(tmp_path: Path) -> None:
    app = _token_app(tmp_path)
    try:
        client = app.test_client()
        # A stale cookie (say, from before a restart with a new token) does not count.
        client.set_cookie(COOKIE, "an-old-token-from-yesterday")
        for _ in range(FAILURES_PER_CLIENT * 2):
            assert client.get("/api/runs").status_code == 401
        for i in range(FAILURES_PER_CLIENT):
            wrong = {"Authorization": f"Bearer guess-number-{i:08d}"} if i % 2 else None
            resp = client.get("/api/runs", headers=wrong) if wrong else None
            if resp is None:
                resp = client.post("/login", data={"token": f"guess-number-{i:08d}"})
            assert resp.status_code == 401
        # Now even the right token is refused for a while, at /login and as Bearer.
        assert_error(client.post("/login", data={"token": TOKEN}), 429, "too many wrong tokens")
        resp = client.get("/api/runs", headers={"Authorization": f"Bearer {TOKEN}"})
        assert_error(resp, 429, "too many")
        assert resp.headers["Retry-After"]
        # Another client address is not affected.
        other = client.get(
            "/api/runs",
            headers={"Authorization": f"Bearer {TOKEN}"},
            environ_base={"REMOTE_ADDR": "127.0.0.9"},
        )
        assert other.status_code == 200
    finally:
        shutdown(app)
