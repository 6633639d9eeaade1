"""Event ingestion: launcher NDJSON (from its private pipe) -> the store.

Lines are parsed, numbered and re-serialised here, so what is stored and served is always
one compact JSON object per event with a gap-free `seq`, whatever arrives on the pipe. All
lines available at once are written in one transaction, which is what keeps ingestion far
above the 20,000 events/s target while a quiet run still sees each event within
milliseconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import threading
from typing import Any

from bubble import events as ev
from bubble.jobs.hub import Hub
from bubble.jobs.store import Store, now_iso

READ_SIZE = 1 << 16
BATCH_BYTES = 1 << 20  # stop gathering and commit after this much
MAX_LINE = 1 << 20  # a longer line is not an event we can trust to parse cheaply

_decode = json.JSONDecoder().decode
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class EventSink:
    """Numbers, stores and publishes the events of one run."""

    def __init__(self, store: Store, hub: Hub, run_id: str) -> None:
        self.store = store
        self.hub = hub
        self.run_id = run_id
        self.seq = 0
        self.exit_event: dict[str, Any] | None = None
        self.bad_lines = 0
        # Size and sha256 of the events as NDJSON (the `events` artifact), as they go by.
        self.bytes = 0
        self.digest = hashlib.sha256()

    def _row(self, obj: dict[str, Any], line: str | None = None) -> dict[str, Any]:
        """The store row of one event. `line` is its text as received: reused as is when
        it already says what we would write (the launcher numbers as we do)."""
        self.seq += 1
        if obj.get("seq") != self.seq:
            obj["seq"] = self.seq
            line = None
        if not isinstance(obj.get("ts"), str):
            obj["ts"] = now_iso()
            line = None
        etype = obj.get("type")
        if not isinstance(etype, str) or not etype:
            etype = obj["type"] = "unknown"
            line = None
        category = obj.get("category")
        if etype == ev.EXIT:
            self.exit_event = obj
        data = line if line is not None else _dumps(obj)
        return {
            "seq": self.seq,
            "type": etype[:32],
            "category": category[:8] if isinstance(category, str) else None,
            "ts": obj["ts"][:40],
            "data": data,
        }

    def _parse(self, raw: bytes) -> tuple[dict[str, Any], str | None]:
        """(event, its line if reusable verbatim). Anything that is not a JSON object on
        one line becomes a `sandbox.msg` saying so: numbering never skips."""
        if len(raw) > MAX_LINE:
            self.bad_lines += 1
            why = f"an event line of {len(raw)} bytes was too long and was dropped"
            return ev.as_dict(ev.Msg(action="orchestrator.bad_event", message=why)), None
        try:
            line = raw.decode("utf-8")
            obj = _decode(line)
        except ValueError:  # also UnicodeDecodeError
            obj = None
        if not isinstance(obj, dict):
            self.bad_lines += 1
            text = raw[:200].decode("utf-8", "replace")
            why = f"the launcher wrote a line that is not a JSON object: {text}"
            return ev.as_dict(ev.Msg(action="orchestrator.bad_event", message=why)), None
        # JSON may carry CR as whitespace, which would end an SSE line: re-encode then.
        return obj, line.strip() if "\r" not in line else None

    def add_lines(self, lines: list[bytes]) -> None:
        self._add([self._parse(raw) for raw in lines if raw.strip()])

    def add(self, objs: list[dict[str, Any]]) -> None:
        """Store events (numbered here, in order) and wake the run's readers."""
        self._add([(obj, None) for obj in objs])

    def _add(self, parsed: list[tuple[dict[str, Any], str | None]]) -> None:
        if not parsed:
            return
        rows = [self._row(obj, line) for obj, line in parsed]
        self.store.insert_events(self.run_id, rows)
        text = "".join(row["data"] + "\n" for row in rows).encode()
        self.bytes += len(text)
        self.digest.update(text)
        self.hub.publish(self.run_id)


def pump_events(fd: int, sink: EventSink, stop: threading.Event) -> None:
    """Read NDJSON from `fd` until EOF (or `stop` while the pipe is idle), committing
    whatever is available as one batch.

    The first read of a batch waits; further reads only take what is already in the pipe,
    so a flood is committed in large transactions and a trickle event by event.
    """
    pending = b""
    try:
        while True:
            if not select.select([fd], [], [], 0.2)[0]:
                if stop.is_set():
                    break
                continue
            chunk = os.read(fd, READ_SIZE)
            if not chunk:
                break
            data = [pending, chunk]
            size = len(chunk)
            while size < BATCH_BYTES and select.select([fd], [], [], 0)[0]:
                more = os.read(fd, READ_SIZE)
                if not more:
                    break
                data.append(more)
                size += len(more)
            lines = b"".join(data).split(b"\n")
            pending = lines.pop()
            if len(pending) > MAX_LINE:
                lines.append(pending)
                pending = b""
            sink.add_lines(lines)
        if pending.strip():
            sink.add_lines([pending])
    finally:
        os.close(fd)
