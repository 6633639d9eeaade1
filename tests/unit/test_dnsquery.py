"""DNS decoding of what a target sends: real queries decode to name and type; whatever
hostile bytes a target offers, the decoder returns (possibly nothing) and never raises."""

from __future__ import annotations

import socket
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from bubble.sandbox import dnsquery
from bubble.sandbox.decode import ip6_text


def query(name: str, qtype: int = 1, ident: int = 0x1234, flags: int = 0x0100) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".") if p) + b"\0"
    return struct.pack(">HHHHHH", ident, flags, 1, 0, 0, 0) + labels + struct.pack(">HH", qtype, 1)


def test_a_and_aaaa_in_one_call():
    out = dnsquery.fields([query("example.com", 1), query("example.com", 28)])
    assert out == {
        "dns_name": "example.com",
        "dns_type": "A,AAAA",
        "dns_queries": ["example.com A", "example.com AAAA"],
    }


def test_single_query_and_tcp_length_prefix():
    q = query("beacon.example", 16)
    assert dnsquery.fields([q]) == {"dns_name": "beacon.example", "dns_type": "TXT"}
    framed = struct.pack(">H", len(q)) + q
    assert dnsquery.fields([framed]) == {"dns_name": "beacon.example", "dns_type": "TXT"}


def test_unknown_type_and_odd_label_bytes():
    header = struct.pack(">HHHHHH", 1, 0, 1, 0, 0, 0)
    raw = header + b"\x03a.b\x03a b\x00" + b"\xfd\xe8\x00\x01"
    [(name, kind)] = dnsquery.questions(raw)
    # A dot or a space inside a label is escaped: the name reads as what was asked.
    assert name == "a\\046b.a\\032b" and kind == "TYPE65000"
    # dnslib refuses labels that are not UTF-8: not decoded, never an exception.
    assert dnsquery.questions(header + b"\x01\xff\x00\x00\x01\x00\x01") == []


def test_not_a_query():
    answer = query("example.com", flags=0x8180)  # QR set: a response
    assert dnsquery.fields([answer]) == {}
    assert dnsquery.fields([b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"]) == {}
    assert dnsquery.fields([b""]) == {}


def test_compression_pointer_loop_ends():
    loop = struct.pack(">HHHHHH", 1, 0, 1, 0, 0, 0) + b"\xc0\x0c" + b"\x00\x01\x00\x01"
    assert dnsquery.questions(loop) == []


@settings(max_examples=400)
@given(st.binary(max_size=600))
def test_any_bytes(data):
    out = dnsquery.fields([data])
    assert set(out) <= {"dns_name", "dns_type", "dns_queries"}


@settings(max_examples=400)
@given(st.integers(0, 0xFFFF), st.integers(1, 8), st.binary(max_size=300))
def test_any_body_behind_a_query_header(ident, qd, body):
    """The header passes the cheap check, so the body reaches the parser."""
    data = struct.pack(">HHHHHH", ident, 0x0100, qd, 0, 0, 0) + body
    for name, kind in dnsquery.questions(data):
        assert isinstance(name, str) and isinstance(kind, str)


@given(
    st.lists(
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20),
        min_size=1,
        max_size=5,
    ),
    st.sampled_from([(1, "A"), (28, "AAAA"), (15, "MX"), (33, "SRV"), (65, "HTTPS")]),
)
def test_names_round_trip(labels, qtype):
    name = ".".join(labels)
    assert dnsquery.questions(query(name, qtype[0])) == [(name, qtype[1])]


@given(st.binary(min_size=4, max_size=4))
def test_ipv4_mapped_shown_as_ipv4(v4):
    assert ip6_text(bytes(10) + b"\xff\xff" + v4) == socket.inet_ntoa(v4)
