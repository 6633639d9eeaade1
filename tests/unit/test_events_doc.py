"""docs/events.md lists every field every event type can carry, and the serialiser keeps to
the contract (seq/ts/type first, None omitted, exit_code/signal kept as null)."""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from pathlib import Path

from bubble import events

DOC = Path(__file__).resolve().parents[2] / "docs" / "events.md"
COMMON = {"seq", "ts", "type", "pid"}


@functools.cache
def documented() -> dict[str, set[str]]:
    """type -> documented fields (common ones included)."""
    out: dict[str, set[str]] = {}
    types: list[str] = []
    for line in DOC.read_text().splitlines():
        if line.startswith("## "):
            types = re.findall(r"`([a-z]+\.[a-z.]+)`", line)
            for t in types:
                out.setdefault(t, set(COMMON))
        elif line.startswith("| `") and types:
            field = re.match(r"\| `(\w+)`", line).group(1)
            for t in types:
                out[t].add(field)
    return out


CLASS_TYPES = {
    events.Spawn: [events.SPAWN],
    events.Msg: [events.MSG],
    events.Dns: [events.NET_DNS],
    events.Capture: [events.NET_CAPTURE],
    events.Exit: [events.EXIT],
    events.End: [events.END],
    events.Drop: [events.FS_DROP],
    events.Error: [events.ERROR],
    events.Call: [
        events.ALERT,
        events.FS_WRITE,
        events.FS_NOOP,
        events.ASK,
        events.ALLOWED,
        events.NET_SOCKET,
        events.NET_CONNECT,
        events.NET_BIND,
        events.NET_SEND,
        events.NET_PEEK,
    ],
}


def test_every_dataclass_field_is_documented_for_every_type_it_carries():
    doc = documented()
    for cls, kinds in CLASS_TYPES.items():
        fields = {f.name for f in dataclasses.fields(cls)}
        for kind in kinds:
            assert kind in doc, f"{kind} has no section in docs/events.md"
            assert fields <= doc[kind], f"{kind}: undocumented {sorted(fields - doc[kind])}"


def test_all_event_classes_are_covered():
    assert set(CLASS_TYPES) == set(events.EVENT_CLASSES)


def assert_documented(event: dict) -> None:
    """Used by kernel tests on real events too."""
    doc = documented()
    assert event["type"] in doc, event
    extra = set(event) - doc[event["type"]]
    assert not extra, f"{event['type']} emits undocumented fields {sorted(extra)}"


def test_serialise_shape():
    line = events.serialise(
        events.Exit(pid=5, exit_code=None, signal=9, duration_ms=3, max_rss_kb=10),
        7,
        "2026-01-01T00:00:00.000Z",
    )
    obj = json.loads(line)
    assert list(obj)[:3] == ["seq", "ts", "type"] and obj["exit_code"] is None
    alert = json.loads(
        events.serialise(
            events.Call(type=events.ALERT, pid=1, category="fs", syscall="openat", syscall_no=257),
            1,
            "t",
        )
    )
    assert "path" not in alert and "peer" not in alert


def test_writer_numbers_without_gaps(tmp_path):
    import os

    from bubble.sandbox.eventlog import EventWriter

    path = tmp_path / "ev"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    w = EventWriter(fd, limit=100)
    for i in range(1000):
        w.emit(events.Msg(action="x", message=str(i)))
    w.flush()
    os.close(fd)
    seqs = [json.loads(line)["seq"] for line in path.read_text().splitlines()]
    assert seqs == list(range(1, 1001))


def test_hostile_strings_stay_one_line():
    line = events.serialise(
        events.Call(
            type=events.ALERT,
            pid=1,
            category="fs",
            syscall="open",
            syscall_no=2,
            path='a\n"}{"type":"x\udcff',
        ),
        1,
        "t",
    )
    assert line.count("\n") == 1 and json.loads(line)["path"].startswith("a\n")
