"""The page: `/` (launch) and `/runs/<id>` (a run's permalink) serve the same single page;
its script reads the run id from the URL and renders the run from the store."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template, request
from werkzeug.wrappers import Response

from bubble.web import security
from bubble.web.errors import NotFound
from bubble.web.runs import get_run_or_404, jobs

bp = Blueprint("pages", __name__)


TITLE = "Project Bubble — Sandbox Runner"


def _page(run_id: str = "", title: str = TITLE, missing: str = "") -> str:
    cfg = jobs().cfg
    return render_template(
        "index.html",
        run_id=run_id,
        title=title,
        missing=missing,
        default_timeout=f"{cfg.default_timeout:g}",
        max_timeout=f"{cfg.max_timeout:g}",
        max_upload=cfg.max_upload,
        output_cap=cfg.output_cap,
    )


@bp.get("/")
def index() -> str:
    return _page()


@bp.get("/runs/<run_id>")
def run_page(run_id: str) -> str | tuple[str, int]:
    try:
        run = get_run_or_404(run_id)
    except NotFound:
        # A page, not JSON: the link came from a person; the page says what is missing.
        return _page(missing=run_id[:64]), 404
    what = run.get("command_line") or " ".join(run["command"])
    if run.get("upload_id") and run.get("sample_id"):
        sample = jobs().store.get_sample(run["sample_id"])
        if sample:
            what = f"{sample['name']} ({sample['sha256'][:12]})"
    return _page(run_id, title=f"{what[:80]} · {run['status']} — Bubble")


@bp.get("/login")
def login_form() -> str:
    return render_template("login.html")


@bp.post("/login")
def login() -> Response:
    return security.login(current_app.config.get("TOKEN"), request.form.get("token", ""))
