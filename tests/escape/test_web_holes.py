"""The web server holes of issue 13 (finding 8), probed from outside against a real
`bubble serve` process, as the red team did. The thorough tests are in tests/web and
tests/browser; these are the probes, kept small."""

from __future__ import annotations

import json
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from bubble.web import shutdown
from tests.web.helpers import ServeProcess, make_app, synthetic_run

TOKEN = secrets.token_urlsafe(24)
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    data = tmp_path_factory.mktemp("web-holes") / "data"
    app = make_app(data)
    run_id = synthetic_run(app, 100_000)  # 22 MB of SSE: more than waitress buffered
    shutdown(app)
    server = ServeProcess(data, "--threads", "4", env={"BUBBLE_TOKEN": TOKEN})
    server.run_id = run_id  # type: ignore[attr-defined]
    yield server
    server.stop()


def _post(served: ServeProcess, body: bytes, path: str = "/api/runs") -> requests.Response:
    auth = {"Authorization": f"Bearer {TOKEN}", **JSON}
    return requests.post(served.url + path, data=body, headers=auth, timeout=60)


def _clean(resp: requests.Response, status: int) -> None:
    assert resp.status_code == status, resp.text[:300]
    assert set(resp.json()) == {"error", "hint"}


def test_a_60_mb_body_is_refused_unparsed(served: ServeProcess) -> None:
    # Was: hours of CPU in shlex before the 400.
    body = b'{"cmd": "/bin/echo", "args": "' + b"a" * (60 << 20) + b'"}'
    _clean(_post(served, body), 413)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"cmd": "\\ud800"}', "surrogate"),
        (b'{"cmd": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
        (b'{"cmd": "/bin/true", "timeout": Infinity}', "Infinity is not a JSON number"),
        (b'{"cmd": "/bin/true", "timeout": 1e-300}', "at least"),
    ],
)
def test_hostile_json_is_a_clean_400(served: ServeProcess, body: bytes, fragment: str) -> None:
    resp = _post(served, body)
    _clean(resp, 400)
    assert fragment in resp.json()["error"]


@pytest.mark.parametrize("query", ["/api/runs?before=1" + "0" * 30, "/api/runs?limit=1" + "0" * 30])
def test_huge_numbers_are_a_clean_400(served: ServeProcess, query: str) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    _clean(requests.get(served.url + query, headers=auth, timeout=10), 400)


def test_a_one_character_token_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="at least 16 characters"):
        ServeProcess(tmp_path / "d", "--host", "0.0.0.0", env={"BUBBLE_TOKEN": "x"})


def test_silent_streams_leave_the_server_answering(served: ServeProcess) -> None:
    """Four threads: four silent SSE clients used to stop /api/health."""
    port = int(served.url.rsplit(":", 1)[1])
    socks = []
    try:
        for i in range(8):
            sock = socket.create_connection(
                ("127.0.0.1", port), source_address=(f"127.0.1.{i + 1}", 0)
            )
            req = (
                f"GET /api/runs/{served.run_id}/events HTTP/1.1\r\n"  # type: ignore[attr-defined]
                f"Host: 127.0.0.1:{port}\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
            )
            sock.sendall(req.encode())
            socks.append(sock)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        health = requests.get(served.url + "/api/health", headers=auth, timeout=20)
        assert health.status_code == 200 and json.loads(health.text)["ok"]
    finally:
        for sock in socks:
            sock.close()


def test_login_is_rate_limited(served: ServeProcess) -> None:
    """Last: it locks 127.0.0.1 out of this server for a minute."""
    for i in range(10):
        resp = requests.post(served.url + "/login", data={"token": f"guess{i:012d}"}, timeout=10)
        assert resp.status_code == 401
    resp = requests.post(served.url + "/login", data={"token": TOKEN}, timeout=10)
    _clean(resp, 429)
