"""A flood through PostgreSQL: 200,000 denied calls of one real run, every event stored
once, gap-free, and served by the SSE stream."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.servers import PostgresServer
from tests.web.helpers import ServeProcess, SSEClient, wait_done

pytestmark = pytest.mark.usefixtures("engine")

N = 200_000


def test_200000_events_of_one_run_through_postgresql(
    tmp_path: Path, postgres: PostgresServer, probe: str
) -> None:
    url = postgres.fresh_url()
    server = ServeProcess(tmp_path / "data", "--db-url", url, "--max-timeout", "600")
    try:
        body = {"cmd": [probe, "flood", str(N), "85", "s:/proc/bubble-denied/x", "0644"]}
        resp = requests.post(f"{server.url}/api/runs", json=body | {"timeout": 600}, timeout=10)
        assert resp.status_code == 202, resp.text
        run_id = resp.json()["id"]
        seqs: list[int] = []
        batch = f"{server.url}/api/runs/{run_id}/events?batch=1000"
        for msg in SSEClient(batch).messages(timeout=300):
            if msg.event == "end":
                break
            seqs.extend(range(int(msg.id) - msg.data.count("\n"), int(msg.id) + 1))
        rec = wait_done(server.url, run_id, timeout=600)
    finally:
        server.stop()
    assert rec["status"] == "completed", rec
    assert rec["counts"]["fs"] == N, rec["counts"]
    assert rec["counts"]["events"] == rec["last_seq"]
    assert seqs == list(range(1, rec["last_seq"] + 1))
