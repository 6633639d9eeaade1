"""Accepting connections within the cap. asyncio's own server accepts whatever arrives; ours
stops reading the listener while `Limits.connections` are open and resumes as they end, so
a flood waits in the kernel's backlog (then in the client's SYN retries) instead of being
refused: every connection is still recorded, and open ones stay bounded."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable

from bubble.netsim import parse
from bubble.netsim.record import Seen
from bubble.netsim.sinkhole import Shared, plain_address

_BURST = 64  # accepts per readiness callback, so one listener cannot starve the loop


class Acceptor:
    def __init__(
        self, listener: socket.socket, factory: Callable[[], asyncio.Protocol], shared: Shared
    ) -> None:
        self.listener = listener
        self.factory = factory
        self.shared = shared
        self.loop = asyncio.get_running_loop()
        self.reading = False
        self.closed = False
        self.tasks: set[asyncio.Task[object]] = set()
        shared.on_release.append(self.resume)

    def resume(self) -> None:
        if (
            not (self.reading or self.closed)
            and self.shared.admitted < self.shared.limits.connections
        ):
            self.loop.add_reader(self.listener.fileno(), self.on_readable)
            self.reading = True

    def pause(self) -> None:
        if self.reading:
            self.loop.remove_reader(self.listener.fileno())
            self.reading = False

    def on_readable(self) -> None:
        for _ in range(_BURST):
            if self.shared.admitted >= self.shared.limits.connections:
                self.shared.recorder.counts["paused"] += 1
                self.pause()
                return
            try:
                conn, _ = self.listener.accept()
            except OSError:  # BlockingIOError: none left; EMFILE and the like: try later
                return
            conn.setblocking(False)
            self.shared.admitted += 1
            task = self.loop.create_task(self._start(conn))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _start(self, conn: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(self.factory, conn)
        except OSError:
            conn.close()
            self.shared.release()

    async def close(self) -> None:
        """The run ends: let connections being set up finish (cancelled, asyncio would close
        them unread), record what the kernel still holds for us, then stop listening."""
        self.pause()
        self.closed = True
        await asyncio.gather(*self.tasks, return_exceptions=True)
        drain_backlog(self.listener, self.shared)
        self.listener.close()


def drain_backlog(listener: socket.socket, shared: Shared) -> None:
    """Accept what is left in the backlog, read what each client already sent (without
    waiting) and record it, so the last burst before the end is not lost."""
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.setblocking(False)
            data = b""
            with contextlib.suppress(OSError):
                data = conn.recv(shared.limits.per_connection)
            peer, port = conn.getsockname()[:2]
            if port == 53:
                continue  # a DNS-over-TCP client at the very end: no question was answered
            shared.recorder.seen(
                Seen(
                    plain_address(peer),
                    port,
                    "tcp",
                    data,
                    tls_sni=parse.tls_sni(data),
                    ended="run-end",
                )
            )
