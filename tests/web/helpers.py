"""Helpers for the web and browser tests: real servers on free loopback ports, an SSE
client, synthetic runs written straight into the store, and an engine probe."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from flask import Flask

from bubble.jobs import schema
from bubble.jobs.ingest import EventSink
from bubble.jobs.service import Jobs
from bubble.jobs.store import new_id, now_iso
from bubble.web import create_app, shutdown

ROOT = Path(__file__).resolve().parents[2]


def make_app(data_dir: Path, **config: Any) -> Flask:
    """An app over a real SQLite file in `data_dir` (or the store `DB_URL` names)."""
    return create_app({"DATA_DIR": str(data_dir), "WORKERS": 2, **config})


def jobs_of(app: Flask) -> Jobs:
    return app.extensions["bubble"]


class LiveServer:
    """`app` served by waitress (the production server) in this process, on a free port,
    so a test can both talk HTTP to it and write into its store."""

    def __init__(self, app: Flask, threads: int = 32, **server: Any) -> None:
        from bubble.web.httpd import create_http_server

        self.app = app
        self.server = create_http_server(app, "127.0.0.1", 0, threads, **server)
        self.port = self.server.effective_port  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        # stop() closes the listening socket under the loop, which may then see EBADF.
        with contextlib.suppress(OSError):
            self.server.run()

    def stop(self) -> None:
        self.server.close()
        self.thread.join(5)
        shutdown(self.app)


class ServeProcess:
    """`python -m bubble serve --port 0 ...` as a subprocess; stopped by its PID."""

    def __init__(self, data_dir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        cmd = [sys.executable, "-m", "bubble", "serve", "--port", "0", "--data-dir", str(data_dir)]
        self.proc = subprocess.Popen(
            [*cmd, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("bubble: serving "):
            assert self.proc.stderr is not None
            self.proc.wait(15)
            err = self.proc.stderr.read()
            self.stop()
            raise RuntimeError(f"server did not start ({self.proc.returncode}): {line!r} {err!r}")
        self.url = line.split()[2].rstrip("/")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()
        return self.proc.returncode


@dataclass
class SSEMessage:
    event: str = "message"
    data: str = ""
    id: str | None = None


@dataclass
class SSEClient:
    """A minimal SSE reader over `requests` that also records comments and timings."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    comments: list[str] = field(default_factory=list)

    def messages(self, timeout: float = 30) -> Iterator[SSEMessage]:
        headers = {"Accept": "text/event-stream", **self.headers}
        with requests.get(self.url, headers=headers, stream=True, timeout=timeout) as resp:
            resp.raise_for_status()
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            buf = b""
            msg = SSEMessage()
            for chunk in resp.iter_content(chunk_size=None):
                buf += chunk
                while b"\n" in buf:
                    raw, buf = buf.split(b"\n", 1)
                    line = raw.decode()
                    if line == "":
                        if msg.data or msg.event != "message":
                            yield msg
                        msg = SSEMessage()
                    elif line.startswith(":"):
                        self.comments.append(line)
                    else:
                        name, _, value = line.partition(":")
                        value = value[1:] if value.startswith(" ") else value
                        if name == "data":
                            msg.data = f"{msg.data}\n{value}" if msg.data else value
                        elif name == "event":
                            msg.event = value
                        elif name == "id":
                            msg.id = value


def synthetic_run(
    app: Flask,
    n_events: int,
    status: str = schema.COMPLETED,
    stdout: bytes = b"",
    alert_every: int = 10,
) -> str:
    """A run written straight into the store: `n_events` events, every `alert_every`-th a
    denied write (distinct paths, so grouping has work to do), the last a process.exit."""
    jobs = jobs_of(app)
    run_id = new_id()
    if stdout:
        jobs.store.add_output(run_id, "stdout", 0, stdout)
    jobs.store.create_run(
        {
            "id": run_id,
            "status": schema.RUNNING if status not in schema.TERMINAL else status,
            "created_at": now_iso(),
            "started_at": now_iso(),
            "command": ["synthetic", str(n_events)],
            "policy": {"deny_fs": True, "deny_net": True, "notify_exec": True},
            "timeout": 8.0,
            "timed_out": False,
            "last_seq": 0,
        }
    )
    if n_events:
        add_events(app, run_id, 0, n_events, alert_every, final=status in schema.TERMINAL)
    return run_id


def event_obj(seq: int, alert_every: int, last: bool) -> dict[str, Any]:
    if last:
        return {"type": "process.exit", "pid": 1, "exit_code": 0, "signal": None,
                "duration_ms": 5, "max_rss_kb": 1000, "timed_out": False}  # fmt: skip
    if alert_every and seq % alert_every == 0:
        return {"type": "policy.alert", "pid": 7, "category": "fs", "syscall": "openat",
                "syscall_no": 257, "reason": "errno", "denied": "EPERM",
                "path": f"/tmp/flood/{seq // alert_every % 1000}", "flags": "O_WRONLY|O_CREAT"}  # fmt: skip
    return {"type": "process.spawn", "pid": 7, "exe": "/bin/true", "argv": ["true", str(seq)]}


def add_events(
    app: Flask, run_id: str, start: int, count: int, alert_every: int = 10, final: bool = False
) -> None:
    """Append events start+1..start+count (in batches, as the runner does)."""
    jobs = jobs_of(app)
    sink = EventSink(jobs.store, jobs.hub, run_id)
    sink.seq = start
    end = start + count
    for lo in range(start, end, 5000):
        hi = min(end, lo + 5000)
        sink.add([event_obj(s, alert_every, final and s == end) for s in range(lo + 1, hi + 1)])


def add_stream_artifacts(app: Flask, run_id: str, stdout: bytes = b"") -> None:
    """The stdout, stderr and events artifacts of a synthetic run (content in the store)."""
    import hashlib

    jobs = jobs_of(app)
    events = b"".join(data.encode() + b"\n" for _, data in jobs.store.iter_events(run_id))
    rows = []
    for kind, name, data in (
        ("stdout", "stdout.txt", stdout),
        ("stderr", "stderr.txt", b""),
        ("events", "events.ndjson", events),
    ):
        rows.append(
            {"id": new_id(), "run_id": run_id, "kind": kind, "name": name, "path": None,
             "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "created_at": now_iso()}
        )  # fmt: skip
    jobs.store.add_artifacts(rows)


def finish_run(app: Flask, run_id: str, status: str = schema.COMPLETED) -> None:
    jobs = jobs_of(app)
    jobs.store.update_run(run_id, status=status, ended_at=now_iso(), exit_code=0)
    jobs.hub.publish(run_id)


def engine_problem() -> str | None:
    """Why `bubble run` cannot sandbox here, or None if it can."""
    r, w = os.pipe()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "bubble", "run", "--events-fd", str(w), "--", "/bin/true"],
            pass_fds=(w,),
            capture_output=True,
            timeout=60,
        )
    finally:
        os.close(w)
    with os.fdopen(r, "rb") as f:
        lines = f.read().splitlines()
    if proc.returncode != 0 or not lines:
        return f"bubble run failed ({proc.returncode}): {proc.stderr.decode()[-300:]}"
    if json.loads(lines[-1]).get("type") != "process.exit":
        return "bubble run did not end with process.exit"
    return None


def wait_done(base: str, run_id: str, timeout: float = 60, **kw: Any) -> dict[str, Any]:
    """Poll the API until the run is terminal; returns its record."""
    deadline = time.monotonic() + timeout
    while True:
        rec = requests.get(f"{base}/api/runs/{run_id}", timeout=10, **kw).json()
        if rec["done"] or time.monotonic() > deadline:
            return rec
        time.sleep(0.05)
