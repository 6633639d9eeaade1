"""Hostile request bodies and query numbers: each gets a clean 4xx in the one error shape,
is refused before it costs CPU, and writes nothing (issue 13, finding 8)."""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bubble.web.body import MAX_JSON_BODY
from tests.web.helpers import LiveServer, synthetic_run
from tests.web.test_web_api import assert_error, nothing_written

JSON = {"Content-Type": "application/json"}


def _post(client: FlaskClient, text: str, path: str = "/api/runs"):
    return client.post(path, data=text.encode("utf-8", "surrogatepass"), headers=JSON)


@pytest.mark.parametrize("path", ["/api/runs", "/run"])
def test_a_megabyte_of_args_is_refused_before_it_is_split(
    app: Flask, client: FlaskClient, data_dir: Path, path: str
) -> None:
    # Was: split first (11 s of CPU for 1 MB with shlex), 400 afterwards.
    body = json.dumps({"cmd": "/bin/echo", "args": "a" * (1 << 20)})
    assert_error(_post(client, body, path), 413, "at most 512 KiB")
    nothing_written(app, data_dir)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"cmd": "/bin/echo", "args": "a" * (65 << 10)}, "args is longer than 65536 bytes"),
        ({"cmd": "x" * (65 << 10)}, "cmd is longer than"),
        ({"cmd": "/bin/echo", "args": ["a"] * 2000}, "args has more than 1024 words"),
        ({"cmd": "/bin/echo", "args": ["é" * 40_000]}, "args is longer than"),
        ({"cmd": "/bin/echo \ud800"}, "lone UTF-16 surrogate"),
        ({"cmd": "/bin/true", "args": ["\udfff"]}, "lone UTF-16 surrogate"),
        ({"cmd": "/bin/true", "timeout": 1e-300}, "at least 0.1 seconds"),
        ({"cmd": "/bin/true", "timeout": 10**400}, "exceeds this server's limit"),
        ({"cmd": "/bin/true", "permissions": {"network": [[[[[[[[[]]]]]]]]]}}, "too deeply"),
    ],
)
def test_hostile_values_get_a_clean_400(
    app: Flask, client: FlaskClient, data_dir: Path, body: dict, fragment: str
) -> None:
    assert_error(_post(client, json.dumps(body)), 400, fragment)
    nothing_written(app, data_dir)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('{"cmd": "/bin/true", "timeout": Infinity}', "Infinity is not a JSON number"),
        ('{"cmd": "/bin/true", "timeout": -Infinity}', "-Infinity is not a JSON number"),
        ('{"cmd": "/bin/true", "timeout": NaN}', "NaN is not a JSON number"),
        ('{"cmd": "/bin/true", "timeout": 1e400}', "timeout must be a finite number"),
        ('{"cmd": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
        ('{"cmd": "\\ud800"}', "lone UTF-16 surrogate"),
    ],
)
def test_hostile_json_text_gets_a_clean_400(
    app: Flask, client: FlaskClient, data_dir: Path, text: str, fragment: str
) -> None:
    assert_error(_post(client, text), 400, fragment)
    nothing_written(app, data_dir)


def test_invalid_utf8_is_refused(client: FlaskClient) -> None:
    resp = client.post("/api/runs", data=b'{"cmd": "\xff"}', headers=JSON)
    assert_error(resp, 400, "not UTF-8")


@pytest.mark.parametrize(
    "query",
    [
        "events?after=99999999999999999999",
        "events?format=json&after=99999999999999999999",
        "events?format=json&after=1&limit=99999999999999999999",
        "events?batch=" + "9" * 5000,
        "output?stdout=99999999999999999999",
        "output?stderr=9223372036854775808",
        "events?after=-1",
        "events?after=1e3",
        "events?after=%EF%BC%91",  # a fullwidth digit: int() would take it
    ],
)
def test_huge_or_odd_query_numbers_get_a_clean_400(
    app: Flask, client: FlaskClient, query: str
) -> None:
    run_id = synthetic_run(app, 3)
    assert_error(client.get(f"/api/runs/{run_id}/{query}"), 400, "")


def test_huge_history_cursor_gets_a_clean_400(client: FlaskClient) -> None:
    assert_error(client.get("/api/runs?before=99999999999999999999"), 400, "before is too large")
    assert_error(client.get("/api/runs?limit=99999999999999999999"), 400, "limit")
    assert client.get("/api/runs?before=9223372036854775807").status_code == 200


def test_a_chunked_body_is_read_only_up_to_the_limit(live: LiveServer) -> None:
    """No Content-Length: the server reads one byte past the limit and refuses."""

    def chunks():
        yield b'{"cmd": "/bin/echo", "args": "'
        for _ in range(4 * MAX_JSON_BODY // 65536):
            yield b"a" * 65536
        yield b'"}'

    conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=60)
    try:
        conn.request("POST", "/api/runs", body=chunks(), headers=JSON, encode_chunked=True)
        resp = conn.getresponse()
        body = json.loads(resp.read())
    finally:
        conn.close()
    assert resp.status == 413 and "at most 512 KiB" in body["error"], body
    assert live.app.extensions["bubble"].store.list_runs(5) == []
