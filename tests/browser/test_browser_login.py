"""Chromium logs in to a server in token mode (issue 13, finding 8): the login form's POST
must pass the origin check, and the page must work afterwards."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.web.helpers import LiveServer, jobs_of, make_app

pytestmark = pytest.mark.browser


@pytest.fixture
def token_site(tmp_path: Path) -> Iterator[tuple[LiveServer, str]]:
    """What `bubble serve --host 0.0.0.0 --token-file F` builds (any Host name, a token),
    bound to 127.0.0.1 so that nothing leaves the machine."""
    token = secrets.token_urlsafe(24)
    server = LiveServer(make_app(tmp_path / "data", TOKEN=token, ALLOWED_HOSTS=None))
    yield server, token
    server.stop()


def test_chromium_logs_in_and_uses_the_page(token_site: tuple[LiveServer, str], page) -> None:
    site, token = token_site
    sent: dict[str, str] = {}

    def on_request(req) -> None:
        if req.method == "POST" and req.url.endswith("/login"):
            sent.update(req.all_headers())

    page.on("request", on_request)
    page.goto(site.url + "/")
    assert page.url == site.url + "/login"
    page.fill("input[name=token]", token)
    with page.expect_navigation():
        page.click("button[type=submit]")
    # Was: 403 "cross-origin request from 'null' refused" (Referrer-Policy: no-referrer).
    assert page.url == site.url + "/", page.content()[:500]
    page.wait_for_selector("#run-form")
    print(
        "login POST sent Origin:", sent.get("origin"), "Sec-Fetch-Site:", sent.get("sec-fetch-site")
    )
    # A state change from the page (an upload) passes the origin check with the cookie.
    status, upload_id = page.evaluate(
        """async () => {
            const form = new FormData();
            form.append("file", new Blob(["#!/bin/sh\\necho hi\\n"]), "hi.sh");
            const resp = await fetch("/api/uploads", {method: "POST", body: form});
            return [resp.status, (await resp.json()).id];
        }"""
    )
    assert status == 201
    assert jobs_of(site.app).uploads.get(upload_id) is not None
