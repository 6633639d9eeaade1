"""The least-privilege loop in the API: the policy a run would have needed, and what two
runs tried differently. Both are computed by the jobs layer from the stored events
(`jobs/leastpriv.py`, the modules `bubble policy suggest` and `bubble diff` use).

- `GET /api/runs/<id>/policy/suggest` -> `{"toml", "policy", "scopes", "notes", "unscoped"}`;
  the TOML (with a comment per scope naming its evidence) posts back as a run's `policy`.
- `GET /api/diff?a=<id>&b=<id>` -> `{"only_a", "only_b", "changed", "counts", "a", "b"}`.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from bubble.jobs.leastpriv import diff_runs, suggest_policy
from bubble.web.errors import BadRequest
from bubble.web.runs import get_run_or_404, jobs

bp = Blueprint("leastpriv", __name__)


@bp.get("/api/runs/<run_id>/policy/suggest")
def suggest(run_id: str) -> Response:
    return jsonify(suggest_policy(jobs().store, get_run_or_404(run_id)))


@bp.get("/api/diff")
def diff() -> Response:
    ids = {side: request.args.get(side, "") for side in ("a", "b")}
    missing = [side for side, value in ids.items() if not value]
    if missing:
        raise BadRequest(
            f"give run ids as ?a= and ?b= ({missing[0]} is missing)", "e.g. /api/diff?a=ID&b=ID"
        )
    runs = {side: get_run_or_404(value) for side, value in ids.items()}
    return jsonify(diff_runs(jobs().store, runs["a"], runs["b"]))
