"""The line a terminal shows per event: readable, coloured only when asked, and a hostile
path cannot move the cursor or recolour the terminal."""

from __future__ import annotations

from bubble import eventline


def test_denied_open_reads_like_the_issue_says():
    e = {"seq": 2, "type": "policy.alert", "pid": 5652, "category": "fs", "syscall": "openat",
         "path": "/tmp/x.txt", "flags": "O_WRONLY|O_CREAT", "denied": "EPERM"}  # fmt: skip
    assert eventline.line(e) == "DENIED  openat /tmp/x.txt O_WRONLY|O_CREAT (pid 5652)\n"
    assert eventline.line(e, colour=True).startswith("\x1b[1;31mDENIED \x1b[0m openat")


def test_ends_signals_and_notes():
    end = {"type": "process.end", "pid": 9, "signal": 11, "signal_name": "SIGSEGV",
           "core_suppressed": True}  # fmt: skip
    assert eventline.line(end) == "END     killed by SIGSEGV (core dump refused) (pid 9)\n"
    err = {"type": "run.error", "action": "launcher", "message": "x: not found", "hint": "fix PATH"}
    assert eventline.line(err) == "ERROR   launcher: x: not found (hint: fix PATH)\n"


def test_control_characters_are_escaped():
    e = {"type": "policy.alert", "pid": 1, "syscall": "openat",
         "path": "/tmp/\x1b[2J\x1b]0;owned\x07\r\nDENIED fake"}  # fmt: skip
    out = eventline.line(e, colour=True)
    assert out.count("\n") == 1 and "\r" not in out and "\x07" not in out
    assert "\\x1b[2J" in out and out.count("\x1b") == 2  # only our own colour codes


def test_no_color_wins(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "")
    assert eventline.colour_wanted(1) is False
