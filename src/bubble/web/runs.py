"""`/api/runs`: start a run, list the history, describe one run, download its artifacts."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request, send_file, url_for

from bubble.jobs import behaviour, schema
from bubble.jobs.report import list_item, run_report
from bubble.jobs.service import Jobs
from bubble.jobs.store import Store
from bubble.web import vocab
from bubble.web.body import int_arg, json_body
from bubble.web.errors import BadRequest, Conflict, NotFound
from bubble.web.parse import parse_run

bp = Blueprint("runs", __name__)

_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_MIMETYPES = {
    "stdout": "text/plain; charset=utf-8",
    "stderr": "text/plain; charset=utf-8",
    "events": "application/x-ndjson",
}
_SUFFIX = {"stdout": ".stdout.txt", "stderr": ".stderr.txt", "events": ".events.ndjson"}


def jobs() -> Jobs:
    """The orchestrator of the current app."""
    found: Jobs = current_app.extensions["bubble"]
    return found


def get_run_or_404(run_id: str) -> dict[str, Any]:
    run = jobs().store.get_run(run_id) if _ID.match(run_id) else None
    if run is None:
        raise NotFound(f"there is no run {run_id!r}", "list the runs with GET /api/runs")
    return run


def links(run_id: str) -> dict[str, str]:
    return {
        "self": url_for("runs.get_run", run_id=run_id),
        "events": url_for("stream.events", run_id=run_id),
        "output": url_for("stream.output", run_id=run_id),
        "page": url_for("pages.run_page", run_id=run_id),
    }


def describe(run: dict[str, Any]) -> dict[str, Any]:
    """A run's full public record with its links, artifact download URLs and its policy in
    the request's words: `policy` to show, `rerun` to post again as it is."""
    report = run_report(jobs().store, run)
    report["policy"] = vocab.policy_view(run["policy"])
    report["rerun"] = {**report["rerun"], **vocab.body_from_policy(run["policy"])}
    for art in report["artifacts"]:
        art["url"] = url_for("runs.artifact", run_id=run["id"], artifact_id=art["id"])
    report["links"] = links(run["id"])
    return report


def start_run(body: dict[str, Any]) -> dict[str, Any]:
    """Validate and queue a run; returns its row."""
    cfg = jobs().cfg
    req = parse_run(body, cfg.default_timeout, cfg.max_timeout)
    return jobs().submit(req)


@bp.post("/api/runs")
def create_run() -> tuple[Response, int, dict[str, str]]:
    run = start_run(json_body())
    body = {"id": run["id"], "status": run["status"], "links": links(run["id"])}
    return jsonify(body), 202, {"Location": body["links"]["self"]}


@bp.get("/api/runs")
def list_runs() -> Response:
    limit = int_arg(request.args.get("limit"), "limit", 20)
    before = request.args.get("before")
    before_num = int_arg(before, "before") if before else None
    if not 1 <= limit <= 200:
        raise BadRequest("limit must be between 1 and 200", "e.g. ?limit=20")
    rows = jobs().store.list_runs(limit, before_num)
    samples = jobs().store.samples_by_id(r["sample_id"] for r in rows if r.get("upload_id"))
    items = []
    for row in rows:
        item = list_item(row, samples.get(row.get("sample_id") or ""))
        item["links"] = {"self": url_for("runs.get_run", run_id=row["id"])}
        item["links"]["page"] = url_for("pages.run_page", run_id=row["id"])
        items.append(item)
    nxt = None
    if len(rows) == limit:
        nxt = url_for("runs.list_runs", limit=limit, before=rows[-1]["num"])
    return jsonify({"runs": items, "next": nxt})


@bp.get("/api/runs/<run_id>")
def get_run(run_id: str) -> Response:
    return jsonify(describe(get_run_or_404(run_id)))


@bp.delete("/api/runs/<run_id>")
@bp.post("/api/runs/<run_id>/cancel")
def cancel_run(run_id: str) -> tuple[Response, int]:
    """Stop a run: a queued one never starts, a running one has its whole tree killed.
    Its events so far stay; it ends `cancelled`. 409 if it had already ended."""
    run = get_run_or_404(run_id)
    if run["status"] in schema.TERMINAL:
        raise Conflict(
            f"run {run_id} has already ended ({run['status']})", "there is nothing to cancel"
        )
    status = jobs().cancel(run_id)
    return jsonify({"id": run_id, "status": status, "links": links(run_id)}), 202


@bp.get("/api/runs/<run_id>/artifacts/<artifact_id>")
def artifact(run_id: str, artifact_id: str) -> Response:
    get_run_or_404(run_id)
    art = jobs().store.get_artifact(run_id, artifact_id) if _ID.match(artifact_id) else None
    if art is None:
        raise NotFound(f"run {run_id} has no artifact {artifact_id!r}", "see the run's artifacts")
    kind = art["kind"]
    # The download name is ours: run id + kind, never a name the target or client chose.
    name = f"{run_id}{_SUFFIX.get(kind, f'.{artifact_id}.bin')}"
    mimetype = _MIMETYPES.get(kind, "application/octet-stream")
    if art["path"]:  # a run from before the store held everything
        path = jobs().cfg.data_dir / art["path"]
        return send_file(path, mimetype, as_attachment=True, download_name=name, max_age=0)
    resp = Response(artifact_body(jobs().store, run_id, art), mimetype=mimetype)
    resp.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    resp.headers["Cache-Control"] = "no-cache"
    return resp


def artifact_body(store: Store, run_id: str, art: dict[str, Any]) -> Iterator[bytes]:
    """An artifact's content from the store, streamed."""
    if art["kind"] in ("stdout", "stderr"):
        offset = 0
        while chunk := store.output_after(run_id, art["kind"], offset, 1 << 20):
            yield chunk
            offset += len(chunk)
    elif art["kind"] == "events":
        for _, data in store.iter_events(run_id):
            yield data.encode() + b"\n"
    else:
        yield store.get_blob(art["id"]) or b""


@bp.get("/api/runs/<run_id>/report")
def behaviour_report(run_id: str) -> Response:
    """The behaviour report (JSON), or `?format=ecs`: one ECS document per event, as a
    download. Computed from the stored events by the module `bubble report` uses."""
    run = get_run_or_404(run_id)
    fmt = request.args.get("format", "json")
    if fmt not in ("json", "ecs"):
        raise BadRequest(f"format {fmt!r} is not offered", "use ?format=json or ?format=ecs")
    events, rep = behaviour.build(jobs().store, run, jobs().cfg.rules_dirs)
    if fmt == "json":
        return jsonify(rep)
    return Response(
        behaviour.ecs_lines(events, rep),
        mimetype="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="{run_id}.ecs.ndjson"'},
    )


@bp.get("/api/health")
def health() -> Response:
    j = jobs()
    body = {"ok": True, "workers": j.cfg.workers, "queued": j.queue.depth()}
    body["queue"] = "redis" if j.cfg.queue_url else "in-process"
    return jsonify(body)
