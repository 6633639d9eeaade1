"""`POST /api/uploads`: store a sample by id with its sha256 and a type/interpreter hint."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Response, jsonify, request, send_file

from bubble.web.errors import BadRequest, NotFound
from bubble.web.runs import jobs

# A download name keeps the client's name readable but never carries a path, quote or
# control character into Content-Disposition.
_UNSAFE_NAME = re.compile(r"[^\w.+() -]")

bp = Blueprint("uploads", __name__)


def save_upload() -> dict[str, Any]:
    """Store the request's `file` part; returns the public sample record."""
    part = request.files.get("file")
    if part is None:
        raise BadRequest(
            "no file in the upload", "send multipart/form-data with the file in a part named 'file'"
        )
    j = jobs()
    row = j.uploads.save(part.stream, part.filename or "")
    j.forwarder.sample(row)
    return {
        "id": row["id"],
        "name": row["name"],
        "size": row["size"],
        "sha256": row["sha256"],
        "type": row["file_type"],
        "executable": row["executable"],
        "interpreter": row["interpreter"],
        "created_at": row["created_at"],
    }


@bp.post("/api/uploads")
def create_upload() -> tuple[Response, int]:
    return jsonify(save_upload()), 201


@bp.get("/api/uploads/<upload_id>")
def download_upload(upload_id: str) -> Response:
    """The sample itself, under the name it was uploaded with."""
    row = jobs().uploads.get(upload_id)
    if row is None:
        raise NotFound(
            f"there is no upload {upload_id!r}", "upload ids come from POST /api/uploads"
        )
    name = _UNSAFE_NAME.sub("_", row["name"]).strip(" .") or "sample"
    return send_file(
        jobs().uploads.path_of(upload_id),
        mimetype="application/octet-stream",
        as_attachment=True,
        download_name=name,
        max_age=0,
    )
