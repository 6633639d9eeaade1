"""`POST /api/runs/<id>/decisions`: the analyst answers a call an ask-mode run holds.

The answer goes to the store, not to a process here: whichever machine executes the run
polls the store for the calls it holds (jobs/ask.py), so the page works the same whether the
run executes in this process or on a worker elsewhere. The first answer wins; the launcher
keeps the deadline, so an answer after `ask_timeout_s` is refused (409) -- the call is denied.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, jsonify

from bubble.jobs import schema
from bubble.jobs.store import INT32_MAX
from bubble.web.body import json_body
from bubble.web.errors import BadRequest, Conflict
from bubble.web.runs import get_run_or_404, jobs, links

bp = Blueprint("asks", __name__)

ACTIONS = ("allow", "deny", "always")
KEYS = frozenset({"seq", "action"})
EXAMPLE = '{"seq": 12, "action": "allow"}'


def _decision(body: dict[str, Any]) -> tuple[int, str]:
    unknown = sorted(set(body) - KEYS)
    if unknown:
        raise BadRequest(f"unknown key {unknown[0]!r}", f"keys are seq and action, e.g. {EXAMPLE}")
    seq, action = body.get("seq"), body.get("action")
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 < seq <= INT32_MAX:
        raise BadRequest("seq must be the positive seq of a policy.ask event", f"e.g. {EXAMPLE}")
    if action not in ACTIONS:
        raise BadRequest("action must be one of: " + ", ".join(ACTIONS), f"e.g. {EXAMPLE}")
    return seq, action


def _held_until(run_id: str, seq: int) -> float | None:
    """When held call `seq` of the run stops waiting (epoch seconds), or None if `seq` is
    not a `policy.ask` event of that run."""
    rows = jobs().store.events_after(run_id, seq - 1, 1)
    if not rows or rows[0][0] != seq:
        return None
    event = json.loads(rows[0][1])
    if event.get("type") != "policy.ask":
        return None
    try:
        asked = datetime.fromisoformat(event["ts"].replace("Z", "+00:00")).timestamp()
        return asked + float(event["ask_timeout_s"])
    except (KeyError, TypeError, ValueError):
        return 0.0  # no deadline we can read: treat as already decided by the launcher


@bp.post("/api/runs/<run_id>/decisions")
def decide(run_id: str) -> tuple[Response, int]:
    run = get_run_or_404(run_id)
    seq, action = _decision(json_body())
    if run["status"] != schema.RUNNING:
        raise Conflict(
            f"run {run_id} is {run['status']}, not running", "only a running run holds calls"
        )
    until = _held_until(run_id, seq)
    if until is None:
        raise Conflict(
            f"event {seq} of run {run_id} is not a held call (policy.ask)",
            "answer the seq of a policy.ask event",
        )
    if time.time() > until:
        raise Conflict(
            f"held call {seq} has timed out and was denied", "answer sooner, or raise ask_timeout"
        )
    if not jobs().store.add_decision(run_id, seq, action):
        raise Conflict(f"held call {seq} was answered already", "the first answer counts")
    body = {"id": run_id, "seq": seq, "action": action, "links": links(run_id)}
    return jsonify(body), 202
