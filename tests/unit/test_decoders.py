"""Property tests for the decoders: whatever bytes or pointers a hostile target offers, they
return event fields (or a marker), never raise, and never read past what they were given."""

from __future__ import annotations

import ctypes
import mmap
import os
import socket
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from bubble.sandbox.decode import Decoder, open_flags, s32, sock_type, sockaddr_fields
from bubble.sandbox.procmem import TargetMemory
from bubble.sandbox.syscalls import BY_NAME

PID = os.getpid()
PAGE = mmap.PAGESIZE


@given(st.binary(max_size=200))
def test_sockaddr_any_bytes(data):
    out = sockaddr_fields(data, PID)
    assert isinstance(out, dict) and "peer" in out


@given(st.integers(min_value=0, max_value=65535), st.binary(min_size=4, max_size=4))
def test_sockaddr_ipv4_roundtrip(port, addr):
    data = struct.pack("<H", socket.AF_INET) + struct.pack(">H", port) + addr + bytes(8)
    out = sockaddr_fields(data, PID)
    assert out["port"] == port and socket.inet_aton(out["peer"]) == addr


@given(st.binary(min_size=1, max_size=100).filter(lambda b: b"\0" not in b))
def test_sockaddr_abstract_unix(name):
    out = sockaddr_fields(struct.pack("<H", 1) + b"\0" + name, PID)
    assert out["peer"].startswith("@") and out["family_name"] == "AF_UNIX"


@given(st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1))
def test_flag_formatting_total(value):
    text = open_flags(value)
    assert text.split("|")[0] in ("O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE")
    assert sock_type(value)
    assert -(1 << 31) <= s32(value) < (1 << 31)


def test_open_flags_examples():
    assert open_flags(os.O_WRONLY | os.O_CREAT | os.O_TRUNC) == "O_WRONLY|O_CREAT|O_TRUNC"
    assert open_flags(os.O_RDWR | os.O_CLOEXEC | os.O_APPEND) == "O_RDWR|O_APPEND|O_CLOEXEC"
    assert open_flags(0o20200002) == "O_RDWR|O_TMPFILE"
    assert open_flags((1 << 32) | os.O_WRONLY) == "O_WRONLY", "high register bits are not flags"


class Guarded:
    """Two pages: the first readable, the second PROT_NONE, so a string can run into it."""

    def __init__(self) -> None:
        self.map = mmap.mmap(-1, 2 * PAGE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        self.base = ctypes.addressof(ctypes.c_char.from_buffer(self.map))
        libc = ctypes.CDLL(None)
        libc.mprotect(ctypes.c_void_p(self.base + PAGE), PAGE, 0)  # PROT_NONE

    def put_at_end(self, data: bytes) -> int:
        """Write `data` so it ends exactly at the guard page; return its address."""
        start = PAGE - len(data)
        self.map[start:PAGE] = data
        return self.base + start


GUARD = Guarded()
MEM = TargetMemory()


@settings(max_examples=200)
@given(st.binary(min_size=1, max_size=PAGE - 1).filter(lambda b: b"\0" not in b))
def test_string_running_into_an_unmapped_page(data):
    addr = GUARD.put_at_end(data)
    assert MEM.cstring(PID, addr) == data  # stops at the guard, no NUL needed, no crash


@given(st.binary(min_size=1, max_size=300).filter(lambda b: b"\0" not in b))
def test_string_with_nul_before_the_guard(data):
    addr = GUARD.put_at_end(data + b"\0")
    assert MEM.cstring(PID, addr) == data


@given(st.sampled_from([0, 1, 4095, GUARD.base + PAGE, (1 << 47) + 5, (1 << 64) - 1]))
def test_unmapped_pointers_become_markers(addr):
    assert MEM.text(PID, addr).startswith("<unreadable:")


def test_path_is_bounded():
    long = b"a" * 10000 + b"\0"
    buf = ctypes.create_string_buffer(long)
    assert len(MEM.cstring(PID, ctypes.addressof(buf))) == 4096


DEC = Decoder()


@given(st.binary(min_size=0, max_size=64))
def test_msghdr_from_arbitrary_memory(raw):
    buf = ctypes.create_string_buffer(raw.ljust(64, b"\0"))
    out = DEC.msghdr(PID, ctypes.addressof(buf), 16)
    assert isinstance(out, dict)


def test_msghdr_unmapped():
    assert DEC.msghdr(PID, GUARD.base + PAGE, 16)["peer"].startswith("<unreadable")


@given(st.binary(min_size=24, max_size=24))
def test_open_how_any_bytes(raw):
    buf = ctypes.create_string_buffer(raw)
    flags, out = DEC.open_how(PID, ctypes.addressof(buf))
    assert flags == struct.unpack("<Q", raw[:8])[0] and "flags" in out


def test_open_how_unmapped():
    assert DEC.open_how(PID, GUARD.base + PAGE) == (None, {"flags": "<unreadable open_how>"})


@given(st.lists(st.integers(min_value=0, max_value=(1 << 64) - 1), min_size=6, max_size=6))
def test_every_row_decodes_any_registers(regs):
    """Random registers for every row: fields come back, bad pointers become markers."""
    for row in BY_NAME.values():
        if row.category == "internal":
            continue
        out = DEC.fields(row, PID, tuple(regs), peek=16)
        assert isinstance(out, dict)


def test_exact_text_for_bytes_that_are_not_utf8():
    from bubble.events import exact, exact_list

    assert exact("/tmp/é") == ("/tmp/é", None)
    assert exact("/tmp/\\xff") == ("/tmp/\\xff", None)  # a real backslash: exact as it is
    assert exact(os.fsdecode(b"/tmp/\xff")) == ("/tmp/\\xff", b"/tmp/\xff".hex())
    assert exact_list(["a", "b"]) == (["a", "b"], None)
    assert exact_list(["a", os.fsdecode(b"\xfe")]) == (["a", "\\xfe"], ["61", "fe"])
