"""Live streams of a run, read from the store so that resuming is lossless.

`/api/runs/<id>/events` -- Server-Sent Events, `id:` = seq, resumes after `Last-Event-ID`
(or `?after=N`), keep-alive comments while idle, `event: end` (data: the run record) once
the run is over and everything was sent. `?batch=N` groups up to N events that are ready
together into one `event: events` message (one event per `data:` line, `id:` = the last
seq). `?format=json&after=N` answers one page as JSON.

`/api/runs/<id>/output` -- the target's stdout/stderr as `event: stdout|stderr` with
`data: {"text": ...}`; `id:` is "<stdout offset>:<stderr offset>" in bytes, so a reconnect
resumes exactly where the last chunk ended.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from flask import Blueprint, Response, current_app, request, stream_with_context

from bubble.jobs import schema
from bubble.jobs.output import read_text
from bubble.jobs.service import Jobs
from bubble.web.body import int_arg
from bubble.web.errors import BadRequest, TooManyRequests, Unavailable
from bubble.web.runs import describe, get_run_or_404, jobs

bp = Blueprint("stream", __name__)

OUTPUT_CHUNK = 64 << 10


def _wants_json() -> bool:
    fmt = request.args.get("format")
    if fmt in ("json", "sse"):
        return fmt == "json"
    if fmt is not None:
        raise BadRequest(f"unknown format {fmt!r}", "use format=json or format=sse")
    return "text/event-stream" not in request.headers.get("Accept", "") and "after" in request.args


class StreamSlots:
    """Open streams, in all and per client address: each holds a server thread, so both
    are capped (`SSE_MAX_STREAMS`, `SSE_MAX_PER_CLIENT`) to keep threads for everyone
    else. A refused stream gets 429 (this client has too many) or 503 (the server has)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._per_client: Counter[str] = Counter()

    def acquire(self, client: str, total_cap: int, per_client_cap: int) -> Callable[[], None]:
        with self._lock:
            if self._per_client[client] >= per_client_cap:
                raise TooManyRequests(
                    f"this client already has {per_client_cap} open streams",
                    "close other pages of this server, or retry later",
                )
            if self._per_client.total() >= total_cap:
                raise Unavailable(
                    f"the server already serves {total_cap} streams", "retry in a few seconds"
                )
            self._per_client[client] += 1
        released = threading.Event()

        def release() -> None:
            with self._lock:
                if not released.is_set():
                    released.set()
                    self._per_client[client] -= 1
                    if not self._per_client[client]:
                        del self._per_client[client]

        return release

    def open(self) -> int:
        with self._lock:
            return self._per_client.total()


def _slots() -> StreamSlots:
    slots: StreamSlots = current_app.extensions.setdefault("bubble.streams", StreamSlots())
    return slots


def _sse(gen: Iterator[bytes]) -> Response:
    cfg = current_app.config
    release = _slots().acquire(
        request.remote_addr or "?",
        int(cfg.get("SSE_MAX_STREAMS") or 48),
        int(cfg["SSE_MAX_PER_CLIENT"]),
    )
    # The request context stays alive while streaming, for config and url_for.
    resp = Response(
        stream_with_context(gen),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
    # The server calls close() on every response it started, even one never iterated.
    resp.call_on_close(release)
    return resp


def _wait_loop(
    j: Jobs, run_id: str, step: Callable[[], tuple[list[bytes], bool]], end: Callable[[], bytes]
) -> Iterator[bytes]:
    """The shared loop: send what `step` finds, wait for news, beat, and end the stream.

    `step()` returns (chunks, finished). The version is read before the store is asked,
    so news that lands in between still wakes the wait.
    """
    cfg = current_app.config
    beat, poll = cfg["KEEPALIVE_SECONDS"], cfg["POLL_SECONDS"]
    yield b"retry: 1000\n\n"
    last_write = time.monotonic()
    while True:
        version = j.hub.version(run_id)
        chunks, finished = step()
        if chunks:
            yield b"".join(chunks)
            last_write = time.monotonic()
            continue
        if finished:
            yield end()
            return
        # `poll` bounds the wait so that writers in another process are seen too.
        idle = time.monotonic() - last_write
        woke = j.hub.wait(run_id, version, max(0.01, min(poll, beat - idle)))
        if not woke and time.monotonic() - last_write >= beat:
            yield b": keep-alive\n\n"
            last_write = time.monotonic()


def _end_event(run_id: str) -> Callable[[], bytes]:
    def end() -> bytes:
        record = describe(get_run_or_404(run_id))
        return b"event: end\ndata: " + json.dumps(record).encode() + b"\n\n"

    return end


@bp.get("/api/runs/<run_id>/events")
def events(run_id: str) -> Response:
    get_run_or_404(run_id)
    j = jobs()
    batch = current_app.config["SSE_BATCH"]
    header = request.headers.get("Last-Event-ID")
    after = int_arg(header if header is not None else request.args.get("after"), "after")
    if _wants_json():
        return _events_json(j, run_id, after, int_arg(request.args.get("limit"), "limit", 1000))
    group = min(int_arg(request.args.get("batch"), "batch", 0), 1000)
    state = {"after": after}

    def step() -> tuple[list[bytes], bool]:
        status = j.store.run_state(run_id)
        rows = j.store.events_after(run_id, state["after"], batch)
        if not rows:
            return [], status is None or status[0] in schema.TERMINAL
        state["after"] = rows[-1][0]
        if group <= 1:
            return [f"id: {seq}\ndata: {data}\n\n".encode() for seq, data in rows], False
        return [_batch(rows[i : i + group]) for i in range(0, len(rows), group)], False

    return _sse(_wait_loop(j, run_id, step, _end_event(run_id)))


def _batch(rows: list[tuple[int, str]]) -> bytes:
    """Several events in one message (`event: events`, one JSON line per `data:`), `id:`
    the seq of the last: a browser then pays its per-message cost once per batch."""
    lines = "\ndata: ".join(data for _, data in rows)
    return f"event: events\nid: {rows[-1][0]}\ndata: {lines}\n\n".encode()


def _events_json(j: Jobs, run_id: str, after: int, limit: int) -> Response:
    limit = max(1, min(limit, 5000))
    status = j.store.run_state(run_id)
    rows = j.store.events_after(run_id, after, limit)
    next_after = rows[-1][0] if rows else after
    meta: dict[str, Any] = {
        "run_id": run_id,
        "after": after,
        "next_after": next_after,
        "status": status[0] if status else None,
        "done": bool(status and status[0] in schema.TERMINAL and len(rows) < limit),
    }
    # The stored lines are JSON already: splice them instead of parsing and re-encoding.
    body = '{"events":[' + ",".join(data for _, data in rows) + "]," + json.dumps(meta)[1:]
    return Response(body, mimetype="application/json")


@bp.get("/api/runs/<run_id>/output")
def output(run_id: str) -> Response:
    get_run_or_404(run_id)
    j = jobs()
    header = request.headers.get("Last-Event-ID")
    if header:
        out_text, _, err_text = header.partition(":")
        offsets = [int_arg(out_text, "stdout"), int_arg(err_text, "stderr")]
    else:
        offsets = [int_arg(request.args.get(k), k) for k in ("stdout", "stderr")]

    def step() -> tuple[list[bytes], bool]:
        status = j.store.run_state(run_id)
        final = status is None or status[0] in schema.TERMINAL
        chunks = []
        for i, name in enumerate(("stdout", "stderr")):
            text, offsets[i] = read_text(j.store, run_id, name, offsets[i], OUTPUT_CHUNK, final)
            if text:
                data = json.dumps({"text": text})
                chunks.append(f"event: {name}\nid: {offsets[0]}:{offsets[1]}\ndata: {data}\n\n")
        return [c.encode() for c in chunks], final

    def end() -> bytes:
        data = json.dumps({"stdout": offsets[0], "stderr": offsets[1]})
        return f"event: end\ndata: {data}\n\n".encode()

    return _sse(_wait_loop(j, run_id, step, end))
