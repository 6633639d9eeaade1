"""No event is lost silently when the events file's filesystem fills up (issue 13, finding 6).

The target fills a small tmpfs through its own stdout, on the filesystem the events file is
on, makes denied calls while it is full, frees the space (ftruncate of its stdout) and makes
more. Every event must arrive, whole and in order, with a note that some came late.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bubble.events import Msg
from bubble.sandbox.eventlog import EventWriter
from tests.conftest import AS_ROOT
from tests.unit.test_events_doc import assert_documented

pytestmark = pytest.mark.skipif(not AS_ROOT, reason="mounting a tmpfs needs root")

FILL = r"""
import ctypes, errno, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
def creat(i):
    return libc.creat(f"/tmp/bubble-denied-{i}".encode(), 0o644)
try:
    while True:
        os.write(1, b"x" * 4096)
except OSError as e:
    print("FULL", errno.errorcode[e.errno], file=sys.stderr, flush=True)
for i in range(20):
    creat(i)
time.sleep(0.5)
os.ftruncate(1, 0)  # free the space
for i in range(20, 40):
    creat(i)
print("DONE", file=sys.stderr, flush=True)
"""


@pytest.fixture
def small_fs(tmp_path) -> Path:
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k,mode=0777", "tmpfs", str(mnt)], check=True
    )
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _events(path: Path) -> list[dict]:
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"", "the log ends in the middle of a line"
    return [json.loads(line) for line in lines[:-1]]  # a cut line would not parse


def test_a_full_filesystem_delays_events_but_loses_none(small_fs):
    events_path = small_fs / "events.ndjson"
    with open(small_fs / "stdout", "wb") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "bubble", "run", "--events", str(events_path), "--",
             "/usr/bin/python3", "-c", FILL],
            stdout=out, stderr=subprocess.PIPE, text=True, timeout=60,
        )  # fmt: skip
    assert "FULL ENOSPC" in proc.stderr and "DONE" in proc.stderr, proc.stderr
    events = _events(events_path)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    for event in events:
        assert_documented(event)
    creats = [e for e in events if e["type"] == "policy.alert" and e["syscall"] == "creat"]
    assert len(creats) == 40
    [note] = [e for e in events if e["type"] == "sandbox.msg" and e["action"] == "events"]
    assert "No space left on device" in note["message"] and "written late" in note["message"]
    assert "lost" not in note["message"]
    assert events[-1]["type"] == "process.exit" and events[-1]["exit_code"] == 0


def test_beyond_its_bound_the_writer_counts_what_it_lost(small_fs):
    """Pending events are bounded; what does not fit is counted, by seq, and said once
    writing works again; process.exit is always kept."""
    fd = os.open(small_fs / "events.ndjson", os.O_WRONLY | os.O_CREAT, 0o600)
    filler = small_fs / "filler"
    ffd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(ffd, b"x" * 4096)
    except OSError:
        os.close(ffd)
    writer = EventWriter(fd, limit=1, max_pending=2000)
    for i in range(100):
        writer.emit(Msg(action="x", message=f"event {i}"))
    assert writer.outage == "No space left on device"
    filler.unlink()
    writer.close()
    os.close(fd)
    events = _events(small_fs / "events.ndjson")
    note = events[-1]
    assert note["action"] == "events" and "lost (seq" in note["message"], note
    kept = [e["seq"] for e in events[:-1]]
    assert (
        kept == sorted(kept) and len(kept) + int(note["message"].split(", ")[1].split()[0]) == 100
    )
