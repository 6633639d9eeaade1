"""The simulated internet's parsers and DNS answers on hostile input: total (never raise),
bounded, and right on real client bytes (a ClientHello made by Python's own ssl module)."""

from __future__ import annotations

import contextlib
import functools
import ssl
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from bubble import events
from bubble.netsim import dns, parse
from bubble.netsim.names import Names


@functools.cache
def client_hello(server_name: str | None) -> bytes:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with contextlib.suppress(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def test_sni_of_a_real_client_hello():
    hello = client_hello("secure.example")
    assert parse.looks_like_tls(hello) and parse.tls_record_length(hello) == len(hello)
    assert parse.tls_sni(hello) == "secure.example"
    assert parse.tls_sni(client_hello(None)) is None


@given(st.binary(max_size=600))
def test_sni_parser_is_total(data):
    parse.tls_sni(data)
    parse.tls_sni(b"\x16\x03\x01" + data)


@settings(deadline=None)
@given(st.integers(0, 2000), st.binary(max_size=64))
def test_sni_parser_survives_every_truncation_and_corruption(cut, noise):
    hello = client_hello("x.example")
    cut %= len(hello)
    assert parse.tls_sni(hello[:cut]) in (None, "x.example")
    corrupted = hello[:cut] + noise + hello[cut + len(noise) :]
    parse.tls_sni(corrupted)


def test_http_request_line_host_and_completeness():
    req = parse.http_request(b"GET /a?b=1 HTTP/1.1\r\nhost: Stage2.example\r\nX: y\r\n\r\n")
    assert req == parse.HttpRequest(
        "GET /a?b=1 HTTP/1.1", "GET", "/a?b=1", "Stage2.example", complete=True
    )
    partial = parse.http_request(b"POST /up HTTP/1.0\r\nHost: h\r\n")
    assert partial is not None and not partial.complete and partial.host == "h"
    assert parse.http_request(b"\x16\x03\x01\x02\x00") is None
    assert parse.http_request(b"HELLO there HTTP/1.1\r\n\r\n") is None
    assert parse.http_request(b"GET / HTTP/2\r\n\r\n") is None


@given(st.binary(max_size=3000))
def test_http_parser_is_total_and_bounded(data):
    req = parse.http_request(data)
    if req is not None:
        assert len(req.line) <= parse.HEAD_LIMIT


@given(st.binary(max_size=300), st.integers(0, 400))
def test_preview_is_printable_and_bounded(data, limit):
    text = parse.preview(data, limit)
    assert len(text) == min(len(data), limit)
    assert all(32 <= ord(c) < 127 or c in "\t\n\r" for c in text)


def query(name: str, qtype: int, qid: int = 7) -> bytes:
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return q + struct.pack("!HH", qtype, 1)


def test_names_are_stable_and_map_back():
    names = Names()
    a, b = names.v4("One.example."), names.v4("two.example")
    assert names.v4("one.example") == a != b and a == "198.18.0.1"
    assert names.v6("one.example") == "2001:db8:b0b::1"
    assert names.name_of(a) == "one.example" and names.name_of("::ffff:198.18.0.2") == "two.example"
    assert names.name_of("2001:db8:b0b::2") == "two.example"
    assert names.name_of("203.0.113.9") is None and names.name_of("198.18.0.99") is None
    assert names.name_of("not an address") is None


def test_names_past_the_cap_share_the_last_address():
    names = Names(limit=2)
    assert [names.v4(f"n{i}.example") for i in range(4)] == [
        "198.18.0.1",
        "198.18.0.2",
        "198.18.0.2",
        "198.18.0.2",
    ]


def test_dns_answers_a_aaaa_ptr_and_other_types():
    names = Names()
    reply, asked = dns.answer(query("stage2.example", 1), names)
    assert asked == [dns.Asked("stage2.example", "A", "198.18.0.1")]
    assert reply is not None and reply[:2] == b"\x00\x07" and reply.endswith(bytes([198, 18, 0, 1]))
    _, asked = dns.answer(query("stage2.example", 28), names)
    assert asked[0].answer == "2001:db8:b0b::1"
    _, asked = dns.answer(query("1.0.18.198.in-addr.arpa", 12), names)
    assert asked == [dns.Asked("1.0.18.198.in-addr.arpa", "PTR", "stage2.example")]
    reply, asked = dns.answer(query("stage2.example", 16), names)
    assert asked[0].answer == "" and reply is not None and reply[6:8] == b"\0\0"  # no answer
    reply, _ = dns.answer(query("9.9.9.9.in-addr.arpa", 12), names)
    assert reply is not None and reply[3] & 0x0F == 3  # NXDOMAIN


@settings(max_examples=300)
@given(st.binary(max_size=700))
def test_dns_is_total_on_hostile_bytes(data):
    reply, asked = dns.answer(data, Names())
    for q in asked:
        events.from_record(
            events.as_dict(
                events.Dns(dns_name=q.name, dns_type=q.qtype, answer=q.answer, proto="udp")
            )
        )
    assert reply is None or len(reply) < 65536


def test_records_are_checked_strictly():
    for bad in (
        [],
        {"type": "process.exit", "pid": 1},
        {
            "type": "net.dns",
            "dns_name": "x",
            "dns_type": "A",
            "answer": "",
            "proto": "udp",
            "evil": 1,
        },
        {
            "type": "net.capture",
            "peer": "x",
            "port": "80",
            "proto": "tcp",
            "bytes": 0,
            "hex": "",
            "text": "",
        },
        {"type": "net.capture", "peer": "x"},
    ):
        try:
            events.from_record(bad)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad}")
