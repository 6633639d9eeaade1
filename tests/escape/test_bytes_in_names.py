"""Names that are not UTF-8 are logged unambiguously (issue 13, finding 7): the text shows
each undecodable byte as `\\xNN`, and `path_hex` / `argv_hex` / `exe_hex` carry the exact
bytes, so a file named with the byte 0xff cannot pass for one named with the four
characters `\\xff`."""

from __future__ import annotations

import os

from tests.conftest import run_bubble

CREATE = r"""
import os, sys
d = os.fsencode(sys.argv[1])
for name in (b"\xff", b"\\xff", "é".encode()):
    try:
        os.open(d + b"/" + name, os.O_WRONLY | os.O_CREAT, 0o644)
    except OSError as e:
        print(e.strerror)
"""


def test_a_byte_and_its_escape_are_told_apart(workdir):
    res = run_bubble(["/usr/bin/python3", "-c", CREATE, str(workdir)])
    assert res.stdout.count("Operation not permitted") == 3
    assert not os.listdir(workdir)
    by_path = {e["path"]: e for e in res.alerts}
    raw, literal, accent = (f"{workdir}/\\xff", f"{workdir}/\\xff", f"{workdir}/é")
    assert raw == literal  # the text alone cannot tell them apart...
    real_byte, backslash = [e for e in res.alerts if e["path"] == raw]
    assert bytes.fromhex(real_byte["path_hex"]) == os.fsencode(f"{workdir}/") + b"\xff"
    assert "path_hex" not in backslash  # ...the hex can: present only when the text is lossy
    assert "path_hex" not in by_path[accent]  # valid UTF-8 stays as it is


def test_argv_bytes_are_exact_in_exec_and_start_events():
    res = run_bubble(
        ["/bin/sh", "-c", 'exec /bin/true "$0"', os.fsdecode(b"a\xfeb")], ["--notify-exec"]
    )
    assert res.rc == 0, res.stderr
    start = res.of_type("process.spawn")[0]
    assert start["argv"][-1] == "a\\xfeb"
    assert bytes.fromhex(start["argv_hex"][-1]) == b"a\xfeb"
    assert bytes.fromhex(start["argv_hex"][0]) == b"/bin/sh"
    [true] = [e for e in res.of_type("process.spawn") if e.get("exe") == "/bin/true"]
    assert true["argv"] == ["/bin/true", "a\\xfeb"]
    assert [bytes.fromhex(h) for h in true["argv_hex"]] == [b"/bin/true", b"a\xfeb"]
