"""`POST /api/uploads`: store a sample by id with its sha256 and a type/interpreter hint."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from bubble.web.errors import BadRequest
from bubble.web.runs import jobs

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
