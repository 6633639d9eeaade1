"""API errors: one shape, `{"error": "...", "hint": "..."}`, with a fitting status.

Errors of the orchestrator (`BubbleError` subclasses) and of Werkzeug (bad JSON, unknown
URL, oversized body) are mapped here, so no route builds an error body by hand.
"""

from __future__ import annotations

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from bubble.errors import BubbleError, UsageError
from bubble.jobs.queue import QueueFull
from bubble.jobs.service import UnknownUpload
from bubble.jobs.uploads import UploadTooLarge


class ApiError(BubbleError):
    """An error answered to an API client; `status` is its HTTP status."""

    status = 400


class BadRequest(ApiError):
    status = 400


class Unauthorized(ApiError):
    status = 401


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class UnsupportedMediaType(ApiError):
    status = 415


_STATUS = {UsageError: 400, UnknownUpload: 400, UploadTooLarge: 413, QueueFull: 503}

_HTTP_HINTS = {
    400: "check the request against docs/web.md",
    404: "check the URL; runs and artifacts are addressed by the ids the API returned",
    405: "check the HTTP method; see docs/web.md",
    413: "the body is larger than the server accepts; upload a smaller file or start the "
    "server with a larger --max-upload",
}


def error_response(message: str, hint: str, status: int) -> Response:
    resp = jsonify({"error": message, "hint": hint})
    resp.status_code = status
    return resp


def _bubble_error(err: BubbleError) -> Response:
    status = err.status if isinstance(err, ApiError) else _status_of(err)
    resp = error_response(err.message, err.hint, status)
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="bubble"'
    return resp


def _status_of(err: BubbleError) -> int:
    for cls, status in _STATUS.items():
        if isinstance(err, cls):
            return status
    return 500


def _http_error(err: HTTPException) -> Response:
    code = err.code or 500
    message = (err.description or err.name or "error").strip()
    return error_response(message, _HTTP_HINTS.get(code, "see docs/web.md"), code)


def init_app(app: Flask) -> None:
    app.register_error_handler(BubbleError, _bubble_error)
    app.register_error_handler(HTTPException, _http_error)
