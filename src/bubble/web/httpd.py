"""The HTTP server: waitress, set up so that a slow or silent client costs a bounded amount.

Waitress reads requests and writes responses on one asyncore loop and runs the app in a
pool of threads; an SSE stream holds a thread while it lasts. Untuned, a client that never
reads pins that thread for ever: the app writes until 16 MiB are pending, then waits for
the socket with no timeout, and waitress's idle timeout ignores a connection whose request
is still running. 64 such clients on a 100k-event run stopped `/` and `/api/health` and
grew the server from 126 to 466 MB (issue 13). Here:

- *write timeout*: a connection with output pending that has neither sent nor received a
  byte for `write_timeout` seconds is closed by the loop; a thread blocked writing to it
  wakes with `ClientDisconnected` and is free again;
- *bounded buffers*: the app waits once `OUTBUF_HIGH` (1 MiB, not waitress's 16 MiB) is
  pending, so a stream cannot run ahead of its reader; up to `OUTBUF_RAM` stays in memory
  (a smaller spill threshold, 256 KiB, sent pending chunks through a temporary file and
  looked slower in a noisy SSE benchmark, so waitress's default is kept);
- *stream slots*: SSE streams may hold at most `stream_cap(threads)` threads, leaving the
  rest for pages and the API (the per-client and total caps are in `bubble.web.stream`).

Why not an async server: every stream reads the store through SQLAlchemy, which is
synchronous, so an async server would still park each stream on a thread; the measured
alternative (tests/web/test_web_slow_clients.py: 64 silent clients on `--threads 8`)
stays answering with bounded memory on waitress and no new dependency.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any

from flask import Flask

log = logging.getLogger("bubble.web")

OUTBUF_RAM = 1 << 20  # pending output kept in memory per connection (waitress default)
OUTBUF_HIGH = 1 << 20  # the app pauses once this much output is pending
WRITE_TIMEOUT = 30.0  # seconds without progress before a connection with output is closed
IDLE_TIMEOUT = 60  # seconds an idle keep-alive connection stays open


def stream_cap(threads: int) -> int:
    """SSE streams allowed at once: leave a quarter of the threads (at least 2) free."""
    return max(1, threads - max(2, threads // 4))


def create_http_server(
    app: Flask,
    host: str,
    port: int,
    threads: int,
    write_timeout: float = WRITE_TIMEOUT,
    **adjustments: Any,
) -> Any:
    """A waitress server for `app`, not yet running (call `.run()`)."""
    from waitress import create_server

    if app.config.get("SSE_MAX_STREAMS") is None:
        app.config["SSE_MAX_STREAMS"] = stream_cap(threads)
    server = create_server(
        app,
        host=host,
        port=port,
        threads=threads,
        connection_limit=max(100, threads * 2),
        outbuf_overflow=OUTBUF_RAM,
        outbuf_high_watermark=OUTBUF_HIGH,
        max_request_body_size=int(app.config["MAX_CONTENT_LENGTH"]),
        channel_timeout=IDLE_TIMEOUT,
        cleanup_interval=max(1, min(30, int(write_timeout / 2))),
        ident="bubble",
        clear_untrusted_proxy_headers=True,
        **adjustments,
    )
    for listener in _listeners(server):
        listener.maintenance = _with_write_timeout(listener, listener.maintenance, write_timeout)
    return server


def _listeners(server: Any) -> list[Any]:
    """The server itself, or each of its sockets' servers when it listens on several."""
    if hasattr(server, "active_channels"):
        return [server]
    return [s for s in server.map.values() if hasattr(s, "active_channels")]


def _with_write_timeout(
    listener: Any, maintenance: Callable[[float], None], timeout: float
) -> Callable[[float], None]:
    def run(now: float) -> None:
        maintenance(now)
        # Runs inside the loop's poll set-up: closing the fd here would hand select() a
        # closed descriptor (EBADF, measured). Shutting the socket down makes it ready,
        # and the loop then closes the channel itself, waking a thread blocked on it.
        cutoff = now - timeout
        for channel in list(listener.active_channels.values()):
            if channel.total_outbufs_len and channel.last_activity < cutoff:
                log.info(
                    "closing a connection from %s: %d bytes unread for %.0f s",
                    channel.addr[0] if channel.addr else "?",
                    channel.total_outbufs_len,
                    now - channel.last_activity,
                )
                channel.will_close = True
                with contextlib.suppress(OSError):
                    channel.socket.shutdown(socket.SHUT_RDWR)

    return run
