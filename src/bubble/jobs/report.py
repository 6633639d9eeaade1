"""A run as the outside world sees it: the record the API, the SSE `end` event and the
seed's blocking `/run` answer are built from."""

from __future__ import annotations

import shlex
from typing import Any

from bubble import events as ev
from bubble.jobs import schema
from bubble.jobs.store import Store
from bubble.jobs.uploads import Uploads


def counts(store: Store, run_id: str) -> dict[str, Any]:
    """Events by category: violations per `fs`/`net`/`sys`, spawns, totals, by type."""
    out: dict[str, Any] = {"events": 0, "alerts": 0, "fs": 0, "net": 0, "sys": 0, "spawn": 0}
    by_type: dict[str, int] = {}
    for etype, category, n in store.event_counts(run_id):
        out["events"] += n
        by_type[etype] = by_type.get(etype, 0) + n
        if etype == ev.ALERT:
            out["alerts"] += n
            if category in ("fs", "net", "sys"):
                out[category] += n
        elif etype == ev.SPAWN:
            out["spawn"] += n
    out["by_type"] = by_type
    return out


def sample_view(sample: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a run ran: an upload's original name, sha256, size and type, or a command."""
    if sample is None:
        return None
    keys = ("id", "kind", "name", "sha256", "size", "file_type", "interpreter")
    return {k: sample.get(k) for k in keys}


def rerun_target(run: dict[str, Any], sample: dict[str, Any] | None) -> dict[str, Any]:
    """What a re-run of this run runs, in `POST /api/runs` words: the command as typed, or
    an upload named by its id (no new upload) with its interpreter and arguments (the words
    around the sample in argv), and the timeout. The web layer adds the policy part
    (`web/vocab.py`), so the page's form is loaded from one body and a re-run differs only
    in what the user changes there."""
    body: dict[str, Any] = {"timeout": run["timeout"]}
    command = list(run["command"])
    if run.get("upload_id") and sample is not None:
        here = "./" + Uploads.work_name(sample)
        at = command.index(here) if here in command else 0
        body.update(upload_id=run["upload_id"], interpreter=command[:at], args=command[at + 1 :])
    else:
        body["cmd"] = run.get("command_line") or shlex.join(command)
    return body


def run_report(store: Store, run: dict[str, Any]) -> dict[str, Any]:
    """The public view of a run row (links and the policy's words are added by the web
    layer, `web/vocab.py`)."""
    run_id = run["id"]
    sample = store.get_sample(run["sample_id"]) if run.get("sample_id") else None
    terminal = run["status"] in schema.TERMINAL
    stored = run.get("counts") if terminal else None
    changes = run.get("fs_changes") or {}
    arts = [
        {k: a[k] for k in ("id", "kind", "name", "size", "sha256", "created_at")}
        for a in store.artifacts_of(run_id)
    ]
    return {
        "id": run_id,
        "status": run["status"],
        "done": terminal,
        "created_at": run["created_at"],
        "started_at": run.get("started_at"),
        "ended_at": run.get("ended_at"),
        "command": run["command"],
        "command_line": run.get("command_line") or shlex.join(run["command"]),
        "timeout": run["timeout"],
        "exit_code": run.get("exit_code"),
        "signal": run.get("signal"),
        "duration_ms": run.get("duration_ms"),
        "max_rss_kb": run.get("max_rss_kb"),
        "timed_out": bool(run.get("timed_out")),
        "limit": run.get("limit_hit"),
        "launcher_status": run.get("launcher_status"),
        "error": run.get("error"),
        "hint": run.get("hint"),
        "sample_id": run.get("sample_id"),
        "upload_id": run.get("upload_id"),
        "sample": sample_view(sample),
        "rerun": rerun_target(run, sample),  # the web layer adds the policy's words
        "last_seq": run.get("last_seq", 0),
        "counts": stored or counts(store, run_id),
        "artifacts": arts,
        "dropped_files": changes.get("files", []),
        "modified_files": changes.get("modified", []),
        "deleted_files": changes.get("deleted", []),
        "offline": run.get("offline"),
        "worker": run.get("worker"),
    }


def list_item(run: dict[str, Any], sample: dict[str, Any] | None = None) -> dict[str, Any]:
    """A run in the history list: enough to find it again, cheap to produce. `sample` (an
    upload's row) gives its original name and sha256: every upload runs as `./sample`."""
    c = run.get("counts") or {}
    return {
        "id": run["id"],
        "num": run["num"],
        "status": run["status"],
        "created_at": run["created_at"],
        "command_line": run.get("command_line") or shlex.join(run["command"]),
        "exit_code": run.get("exit_code"),
        "signal": run.get("signal"),
        "duration_ms": run.get("duration_ms"),
        "alerts": c.get("alerts"),
        "events": c.get("events", run.get("last_seq", 0)),
        "sample": sample_view(sample) if run.get("upload_id") else None,
    }
