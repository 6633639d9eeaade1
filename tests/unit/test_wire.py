"""The child/keeper -> supervisor messages (sandbox/wire.py)."""

from __future__ import annotations

import os

import pytest

from bubble.sandbox import wire

MESSAGES = [
    wire.Ready(7, True, "/tmp/a dir\nwith a newline\udcff"),
    wire.Ready(3, False, ""),
    wire.Ready(4, True, "/", 9),  # --fs-overlay: the layer's tmpfs fd
    wire.Failed(127, "cannot execute /x y: No such file"),
    wire.InitStatus(9),
    wire.Forked(1234),
    wire.Reaped(256, 5000),
    wire.TimedOut(),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips_on_one_line(msg):
    line = wire.encode(msg)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert wire.decode(line[:-1]) == msg


@pytest.mark.parametrize("bad", [b"", b"ready 1", b"nonsense 1 2", b"forked x", b"reaped 1"])
def test_anything_else_is_refused(bad):
    with pytest.raises(ValueError):
        wire.decode(bad)


def test_the_reader_keeps_partial_lines_and_reports_eof():
    r, w = os.pipe()
    reader = wire.Reader(r)
    data = b"".join(wire.encode(m) for m in MESSAGES[3:])
    os.write(w, data[:5])
    assert reader.read() == []
    os.write(w, data[5:])
    assert reader.read_one() == MESSAGES[3]
    assert reader.read() == MESSAGES[4:]
    os.close(w)
    assert reader.read() == [] and reader.eof
    os.close(r)
