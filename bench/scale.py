"""Scale-out throughput: runs/minute and events/s with one and with two `bubble worker`s.

Starts a private PostgreSQL and Redis (the test fixtures' servers, on loopback, stopped by
PID), a queueing `bubble serve`, and K workers; then
  * runs/minute: R short runs (three denied writes and a line of output each), submitted
    at once, from the first POST to the last run done;
  * events/s: one flood run per worker (N denied creat() calls each, all at once), total
    events stored over the wall time from the first start to the last end;
  * and first the store's own share: N launcher-shaped events through a pipe into
    PostgreSQL (the 20,000 events/s target).

    .venv/bin/python bench/scale.py [--runs 40] [--events 200000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.servers import PostgresServer, RedisServer  # noqa: E402

SHORT = ["/bin/sh", "-c", "for i in 1 2 3; do echo x > d$i; done; echo out"]


def spawn(*args: str) -> tuple[subprocess.Popen[str], str]:
    """`bubble ARGS...` and its first line ("bubble: serving URL ..." / "... ready")."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bubble", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline()


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def submit_and_wait(base: str, bodies: list[dict]) -> tuple[float, list[dict]]:
    start = time.perf_counter()
    ids = []
    for body in bodies:
        resp = requests.post(f"{base}/api/runs", json=body, timeout=30)
        resp.raise_for_status()
        ids.append(resp.json()["id"])
    records = []
    for run_id in ids:
        while True:
            resp = requests.get(f"{base}/api/runs/{run_id}", timeout=30)
            if resp.status_code != 200:
                raise RuntimeError(f"GET run {run_id}: {resp.status_code} {resp.text}")
            if (rec := resp.json())["done"]:
                break
            time.sleep(0.05)
        records.append(rec)
    return time.perf_counter() - start, records


def ingest_rate(url: str, n: int) -> float:
    """Events/s from a launcher-shaped NDJSON pipe into the store (EventSink + pump), the
    orchestrator's share of a flood, without the sandbox's own cost."""
    import json
    import threading

    from bubble.jobs.hub import Hub
    from bubble.jobs.ingest import EventSink, pump_events
    from bubble.jobs.store import Store

    store = Store(url)
    run = {"id": "bench", "status": "running", "created_at": "x", "command": ["x"]}
    store.create_run(run | {"policy": {}, "timeout": 1.0, "timed_out": False, "last_seq": 0})
    line = {"type": "policy.alert", "pid": 7, "category": "fs", "syscall": "creat",
            "syscall_no": 85, "denied": "EPERM", "path": "/proc/bench/x", "mode": 420}  # fmt: skip
    payload = b"".join(
        json.dumps({"seq": i, "ts": "2026-01-01T00:00:00.000Z", **line}).encode() + b"\n"
        for i in range(1, n + 1)
    )
    r, w = os.pipe()
    reader = threading.Thread(
        target=pump_events, args=(r, EventSink(store, Hub(), "bench"), threading.Event())
    )
    start = time.perf_counter()
    reader.start()
    with os.fdopen(w, "wb") as out:
        out.write(payload)
    reader.join()
    elapsed = time.perf_counter() - start
    assert store.run_state("bench") == ("running", n)
    store.close()
    return n / elapsed


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def measure(k: int, runs: int, events: int, probe: str, pg: PostgresServer, rd: RedisServer):
    tmp = Path(tempfile.mkdtemp(prefix="bubble-bench-scale-"))
    common = ["--queue-url", rd.fresh_url(), "--db-url", pg.fresh_url()]
    web, line = spawn("serve", "--port", "0", "--data-dir", str(tmp / "web"), *common)
    workers = [
        spawn("worker", *common, "--name", f"w{i}", "--data-dir", str(tmp / f"w{i}"))[0]
        for i in range(k)
    ]
    try:
        base = line.split()[2].rstrip("/")
        wall, recs = submit_and_wait(base, [{"cmd": SHORT}] * runs)
        assert all(r["status"] == "completed" for r in recs), recs[0]
        per_min = runs / wall * 60
        flood = [probe, "flood", str(events), "85", "s:/proc/bubble-denied/x", "0644"]
        _, recs = submit_and_wait(base, [{"cmd": flood, "timeout": 300}] * k)
        total = sum(r["last_seq"] for r in recs)
        span = max(ts(r["ended_at"]) for r in recs) - min(ts(r["started_at"]) for r in recs)
        assert all(r["counts"]["fs"] == events for r in recs), [r["counts"] for r in recs]
        used = sorted({r["worker"] for r in recs})
        return per_min, total / span, used
    finally:
        for w in workers:
            stop(w)
        stop(web)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--events", type=int, default=200_000)
    args = ap.parse_args()
    probe_dir = Path(tempfile.mkdtemp(prefix="bubble-probe-", dir="/tmp"))
    os.chmod(probe_dir, 0o755)
    probe = str(probe_dir / "probe")
    src = ROOT / "tests" / "probes" / "probe.c"
    subprocess.run(["gcc", "-O1", "-o", probe, str(src), "-lpthread"], check=True)
    pg, rd = PostgresServer(durable=True), RedisServer()
    try:
        sqlite = f"sqlite:///{probe_dir / 'ingest.db'}"
        for name, url in (("SQLite", sqlite), ("PostgreSQL", pg.fresh_url())):
            rate = ingest_rate(url, args.events)
            print(f"ingestion into {name}: {rate:9,.0f} events/s", flush=True)
        for k in (1, 2):
            per_min, rate, used = measure(k, args.runs, args.events, probe, pg, rd)
            print(
                f"{k} worker(s): {per_min:6.1f} runs/minute, {rate:9,.0f} events/s "
                f"(flood runs on {', '.join(used)})",
                flush=True,
            )
    finally:
        pg.stop()
        rd.stop()
        shutil.rmtree(probe_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
