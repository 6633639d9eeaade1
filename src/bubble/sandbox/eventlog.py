"""The event log: numbers events and writes them to a descriptor the target cannot reach.

Lines are buffered and written by `flush()`, which the supervisor calls whenever it is about
to wait, so a flood costs one write per batch while a quiet run still sees each event at once.

A write can fail: the target can fill the events file's filesystem through its own stdout
(ENOSPC), a quota can run out. Nothing is dropped silently then (issue 13, finding 6):

- unwritten bytes stay pending, in order, from the exact byte where the write stopped, so a
  line the kernel cut short is completed by the next write, never left half;
- `retry_at` tells the supervisor loop when to try again (every RETRY seconds), so a quiet
  run retries too;
- pending events are bounded (MAX_PENDING bytes): beyond it new events are counted as lost
  (the final `process.exit` is always kept);
- once writing works again, a `sandbox.msg` (action `events`) says how many events were
  written late and how many were lost, with their seq range;
- at the end, `close()` keeps trying for up to FINAL_WAIT seconds, then says on stderr what
  could not be written.

A reader that is gone (EPIPE) or a descriptor that is not ours any more (EBADF) cannot come
back: those drop the log at once, said once on stderr; denials go on regardless.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import sys
import time

from bubble.events import _FIELD_NAMES, Clock, Event, Exit, Msg, serialise

RETRY = 0.1  # seconds between attempts while writes fail
MAX_PENDING = 8 << 20  # bytes of events kept while writes fail (~40,000 alerts)
FINAL_WAIT = 1.0  # seconds `close()` keeps trying to write the last events
_PERMANENT = frozenset({errno.EPIPE, errno.EBADF, errno.EINVAL})


class EventWriter:
    """See the module doc. `emit` returns the event's seq."""

    def __init__(
        self,
        fd: int,
        limit: int = 1 << 16,
        max_pending: int = MAX_PENDING,
        *,
        text: bool | None = None,
        tee: int | None = None,
    ) -> None:
        """`text`: write a readable line per event instead of NDJSON (True: in colour);
        `tee`: a second descriptor (a memfd) that gets the NDJSON, for the report at the end."""
        self.text = text
        self.tee = tee
        self._tee_parts: list[str] = []
        self.fd = fd
        self.seq = 0
        self.clock = Clock()
        self._parts: list[str] = []
        self._size = 0
        self._limit = limit
        self._pending = bytearray()  # encoded, unwritten; may start in the middle of a line
        self._max_pending = max_pending
        self.broken = False  # the sink is gone for good
        self.outage: str | None = None  # why writes are failing now
        self.retry_at: float | None = None  # monotonic time of the next attempt
        self._late = 0
        self._lost: list[int] = []  # [count, first seq, last seq] once something is lost

    def emit(self, event: Event) -> int:
        self.seq += 1
        ts = self.clock.now()
        line = serialise(event, self.seq, ts)
        if self.tee is not None:
            self._tee_parts.append(line)
        if self.text is not None:
            from bubble.eventline import line as text_line

            fields = {"seq": self.seq, "ts": ts}
            fields |= {n: getattr(event, n) for n in _FIELD_NAMES[type(event)]}
            line = text_line(fields, self.text)
        if self.outage is not None:
            full = len(self._pending) + self._size + len(line) > self._max_pending
            if full and not isinstance(event, Exit):
                lost = self._lost
                self._lost = [lost[0] + 1, lost[1], self.seq] if lost else [1, self.seq, self.seq]
                return self.seq
            self._late += 1
        self._parts.append(line)
        self._size += len(line)
        if self._size >= self._limit:
            self.flush()
        return self.seq

    def flush(self) -> None:
        """Write what is buffered; while writes fail, at most once per RETRY seconds."""
        if self._tee_parts and self.tee is not None:
            tee = "".join(self._tee_parts).encode("utf-8", "backslashreplace")
            self._tee_parts.clear()
            with contextlib.suppress(OSError):  # a full memfd loses the report, never events
                while tee:
                    tee = tee[os.write(self.tee, tee) :]
        if self._parts:
            self._pending += "".join(self._parts).encode("utf-8", "backslashreplace")
            self._parts.clear()
            self._size = 0
        if not self._pending:
            return
        if self.broken:
            self._pending.clear()
            return
        if self.retry_at is not None and time.monotonic() < self.retry_at:
            return
        if self._write() and self.outage is not None:
            self._recovered()

    def _write(self) -> bool:
        """Write pending bytes; True when all are out."""
        view = memoryview(self._pending)
        done = 0
        try:
            while done < len(view):
                try:
                    done += os.write(self.fd, view[done:])
                except BlockingIOError:
                    # A non-blocking consumer pipe: wait until it drains, never drop.
                    select.select([], [self.fd], [])
                except OSError as err:
                    self._failed(err, view[done:])
                    return False
        finally:
            view.release()
            del self._pending[:done]
        self.retry_at = None
        return True

    def _failed(self, err: OSError, unwritten: memoryview) -> None:
        if err.errno in _PERMANENT:
            self.broken = True
            _say(f"cannot write events ({err.strerror}); they are lost")
            return
        if self.outage is None:
            self.outage = err.strerror or str(err)
            # Every event not completely out is late from now on (the first may be cut
            # short in the file: its rest is still pending and completes it).
            self._late += bytes(unwritten).count(b"\n")
        self.retry_at = time.monotonic() + RETRY

    def _recovered(self) -> None:
        message = f"writing events failed ({self.outage}): {self._late} written late"
        if self._lost:
            count, first, last = self._lost
            message += f", {count} lost (seq {first}-{last})"
        self.outage, self._late, self._lost = None, 0, []
        self.emit(Msg(action="events", message=message))
        self.flush()

    def close(self) -> None:
        """The run is over: write everything (trying for up to FINAL_WAIT seconds while
        writes fail), or say on stderr what could not be written."""
        deadline = time.monotonic() + FINAL_WAIT
        while True:
            self.retry_at = None
            self.flush()
            if not self._pending or self.broken or time.monotonic() >= deadline:
                break
            time.sleep(RETRY)
        if self._pending and not self.broken:
            lines = self._pending.count(b"\n")
            _say(f"cannot write events ({self.outage}): the last {lines} are lost")


def _say(text: str) -> None:
    with contextlib.suppress(OSError):
        print(f"bubble: {text}", file=sys.stderr)
