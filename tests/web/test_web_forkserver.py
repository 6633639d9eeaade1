"""Web runs start through the fork server once it is ready, fall back to a cold launcher
while it is down, and see it restarted; the outcome is the same either way."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from bubble.web import shutdown
from tests.web.helpers import jobs_of, make_app


def _run(app, cmd: str) -> dict:
    client = app.test_client()
    run_id = client.post("/api/runs", json={"cmd": cmd}).get_json()["id"]
    assert jobs_of(app).wait(run_id, 60) == "completed"
    return client.get(f"/api/runs/{run_id}").get_json()


@pytest.mark.usefixtures("engine")
def test_web_runs_go_through_the_fork_server_and_survive_its_death(tmp_path: Path) -> None:
    app = make_app(tmp_path / "d")
    try:
        executor = jobs_of(app).executor
        assert executor is not None
        fork = executor.runner.forkserver
        assert fork is not None and fork.wait_ready(60)
        run = _run(app, "/bin/sh -c 'echo hi > /etc/bubble-nope; exit 4'")
        assert fork.forked == 1
        assert run["exit_code"] == 4 and run["counts"]["fs"] == 1
        first = fork.pid
        assert first is not None
        os.kill(first, 9)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{first}").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        # Down: this run starts cold and is the same run; the server comes back meanwhile.
        run = _run(app, "/bin/sh -c 'echo hi > /etc/bubble-nope; exit 4'")
        assert run["exit_code"] == 4 and run["counts"]["fs"] == 1 and fork.forked == 1
        assert fork.wait_ready(60) and fork.starts == 2 and fork.pid != first
        run = _run(app, "/bin/true")
        assert run["exit_code"] == 0 and fork.forked == 2
    finally:
        shutdown(app)
    assert not Path(f"/proc/{fork.pid}").exists() or _zombie(fork.pid)


def test_the_fork_server_can_be_turned_off(tmp_path: Path) -> None:
    app = make_app(tmp_path / "d", FORK_SERVER=False)
    try:
        executor = jobs_of(app).executor
        assert executor is not None and executor.runner.forkserver is None
    finally:
        shutdown(app)


def _zombie(pid: int | None) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"
