"""The seed's API, kept working: `POST /upload` and the blocking `POST /run`.

`/run` answers when the run is over, in the seed's result shape (`alerts` holds the run's
events, as the seed's did). Uploads are referred to by the id `/upload` returned as `path`;
unlike the seed, an arbitrary host path is refused.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, jsonify

from bubble.jobs.output import read_text
from bubble.web.body import json_body
from bubble.web.runs import describe, get_run_or_404, jobs, start_run
from bubble.web.uploads import save_upload

bp = Blueprint("seed", __name__)

MAX_ALERTS = 10_000
MAX_TEXT = 1 << 20


@bp.post("/upload")
def upload() -> Response:
    sample = save_upload()
    # `path` is what the seed's page sends back as `uploaded_path`: here, the upload id.
    return jsonify({"path": sample["id"], "interpreter": sample["interpreter"] or ""} | sample)


@bp.post("/run")
def run() -> Response:
    j = jobs()
    row = start_run(json_body())
    j.wait(row["id"], row["timeout"] + j.cfg.kill_margin + 60)
    return jsonify(seed_result(describe(get_run_or_404(row["id"]))))


def seed_result(rec: dict[str, Any]) -> dict[str, Any]:
    """The seed's `/run` answer, built from our run record."""
    j = jobs()
    run_id = rec["id"]
    alerts = [json.loads(data) for _, data in j.store.events_after(run_id, 0, MAX_ALERTS)]
    stdout, _ = read_text(j.store, run_id, "stdout", 0, MAX_TEXT, True)
    stderr, _ = read_text(j.store, run_id, "stderr", 0, MAX_TEXT, True)
    art = {a["kind"]: a["id"] for a in rec["artifacts"]}
    duration = rec["duration_ms"]
    return {
        "sample_id": rec["sample_id"],
        "run_id": run_id,
        "command": rec["command"],
        "launcher": "python -m bubble run",
        "start_ts": rec["started_at"],
        "end_ts": rec["ended_at"],
        "duration_s": duration / 1000 if duration is not None else None,
        "exit_code": rec["exit_code"],
        "signal": rec["signal"],
        "term_signal": rec["signal"],  # the seed's page reads this name
        "status": rec["status"],
        "timed_out": rec["timed_out"],
        "max_rss_kb": rec["max_rss_kb"],
        "alerts": alerts,
        "alerts_truncated": rec["last_seq"] > len(alerts),
        "counts": rec["counts"],
        "stdout": stdout,
        "stderr": stderr,
        "diagnose": rec["policy"]["diagnose"],
        "pidns": rec["policy"]["pidns"],
        "stdout_artifact_id": art.get("stdout"),
        "events_artifact_id": art.get("events"),
        "offline": j.forwarder.offline,
        "mode": "deny-with-EPERM-continue",
        "dropped_files": rec["dropped_files"],
        "modified_files": rec["modified_files"],
        "error": rec["error"],
        "hint": rec["hint"],
        "links": rec["links"],
    }
