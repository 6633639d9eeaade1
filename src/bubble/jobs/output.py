"""The target's stdout/stderr: pipe -> chunks in the store, readable while they grow.

The store holds output as it holds events: readers (the output SSE stream) read from a
byte offset, so a reconnect resumes exactly, on any machine. Output beyond a cap is
drained and counted but not kept, so a chatty target can neither block on a full pipe nor
fill the database.
"""

from __future__ import annotations

import hashlib
import os
import select
import threading

from bubble.jobs.hub import Hub
from bubble.jobs.store import Store

READ_SIZE = 1 << 16
TAIL = 4096  # the launcher's own error is on the last line of stderr


class OutputPump(threading.Thread):
    """Copies one pipe into the store until EOF or `stop()` (after the launcher is gone,
    a leftover process may still hold the pipe open)."""

    def __init__(self, fd: int, store: Store, run_id: str, stream: str, cap: int, hub: Hub) -> None:
        super().__init__(name=f"output-{stream}-{run_id[:8]}", daemon=True)
        self.fd = fd
        self.store = store
        self.run_id = run_id
        self.stream = stream
        self.cap = cap
        self.hub = hub
        self.kept = 0
        self.dropped = 0
        self.tail = b""
        self.digest = hashlib.sha256()  # of what was kept: the artifact's checksum
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        try:
            while True:
                ready, _, _ = select.select([self.fd], [], [], 0.2)
                if not ready:
                    if self._halt.is_set():
                        break
                    continue
                chunk = os.read(self.fd, READ_SIZE)
                if not chunk:
                    break
                room = self.cap - self.kept
                if room > 0:
                    kept = chunk[:room]
                    self.store.add_output(self.run_id, self.stream, self.kept, kept)
                    self.kept += len(kept)
                    self.digest.update(kept)
                    self.tail = (self.tail + kept)[-TAIL:]
                    self.hub.publish(self.run_id)
                self.dropped += max(0, len(chunk) - max(room, 0))
        finally:
            os.close(self.fd)


def read_text(
    store: Store, run_id: str, stream: str, offset: int, limit: int, final: bool
) -> tuple[str, int]:
    """Text from byte `offset` (at most `limit` bytes) and the offset after it.

    A multi-byte UTF-8 character cut by the end of what is written so far is left for the
    next read, unless the run is `final`; invalid bytes become U+FFFD.
    """
    data = store.output_after(run_id, stream, offset, limit)
    if not data:
        return "", offset
    cut = len(data)
    if not final or len(data) == limit:
        cut = _complete_utf8(data)
    return data[:cut].decode("utf-8", "replace"), offset + cut


def _complete_utf8(data: bytes) -> int:
    """Length of `data` without a trailing, incomplete UTF-8 sequence."""
    n = len(data)
    for back in range(1, min(4, n) + 1):
        byte = data[n - back]
        if byte < 0x80:
            return n  # ASCII: nothing is cut
        if byte >= 0xC0:  # a lead byte: how long should its sequence be?
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return n if back >= need else n - back
    return n  # only continuation bytes: invalid anyway, let the decoder replace them
