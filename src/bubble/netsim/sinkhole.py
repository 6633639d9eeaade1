"""The TCP side of the simulated internet: one listener gets every connection (the namespace's
TPROXY rule sends every port to it; `getsockname()` on an accepted socket is the address and
port the target dialled), reads what the client sends (bounded), answers HTTP with a small 200,
parses a TLS ClientHello for its server name and finishes the handshake with the run's own
certificate, and keeps anything else without a reply. DNS over TCP is served here too."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import Callable

from bubble.netsim import dns, parse, tls
from bubble.netsim.names import Names
from bubble.netsim.record import Limits, Recorder, Seen

DEFAULT_BODY = b"bubble net-sim: a simulated response; nothing left this machine.\n"


def plain_address(address: str) -> str:
    """IPv4-mapped IPv6 shown as IPv4, as the net alerts show it."""
    return address[7:] if address.startswith("::ffff:") and "." in address else address


def http_response(method: str, body: bytes) -> bytes:
    head = (
        "HTTP/1.1 200 OK\r\nServer: bubble-netsim\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    return head if method == "HEAD" else head + body


def _body_expected(head: bytes) -> int:
    """Content-Length of a request head (0 when absent or nonsense)."""
    for line in head.split(b"\r\n\r\n", 1)[0].splitlines()[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            try:
                return max(0, int(value.strip()))
            except ValueError:
                return 0
    return 0


class Shared:
    """State every connection of a run shares: the recorder, bounds, open count, TLS."""

    def __init__(self, recorder: Recorder, limits: Limits, body: bytes, terminate_tls: bool):
        self.recorder = recorder
        self.limits = limits
        self.body = body
        self.terminate_tls = terminate_tls
        self.open: set[Connection] = set()
        self.admitted = 0  # accepted and not yet ended, DNS-over-TCP included: the cap's count
        self.on_release: list[Callable[[], None]] = []  # acceptors waiting for room
        self._ctx: ssl.SSLContext | None = None

    def release(self) -> None:
        self.admitted -= 1
        for resume in self.on_release:
            resume()

    def tls_context(self) -> ssl.SSLContext:
        if self._ctx is None:
            self._ctx = tls.server_context()
        return self._ctx

    def finish_all(self) -> None:
        """The run ends: record every connection still open."""
        for conn in list(self.open):
            conn.finish("run-end")


class Connection(asyncio.Protocol):
    """One accepted connection; records itself exactly once, when it ends."""

    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self.buf = bytearray()
        self.state = "sniff"  # sniff -> plain | tls | hello (TLS seen, not terminated)
        self.sni: str | None = None
        self.tls: ssl.SSLObject | None = None
        self.tls_in = ssl.MemoryBIO()
        self.tls_out = ssl.MemoryBIO()
        self.handshaken = False
        self.plain = bytearray()  # decrypted bytes of a terminated TLS connection
        self.truncated = False
        self.done = False
        self.peer, self.port = "", 0
        self.transport: asyncio.Transport | None = None
        self.timers: list[asyncio.TimerHandle] = []

    # -- asyncio callbacks ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        shared = self.shared
        shared.open.add(self)
        sockname = transport.get_extra_info("sockname") or ("", 0)
        self.peer, self.port = plain_address(str(sockname[0])), int(sockname[1])
        loop = asyncio.get_running_loop()
        self.timers = [
            loop.call_later(shared.limits.idle, self.finish, "idle"),
            loop.call_later(shared.limits.lifetime, self.finish, "lifetime"),
        ]

    def data_received(self, data: bytes) -> None:
        if self.done:
            return
        self._rearm_idle()
        if self.state == "tls":
            self.tls_in.write(data)
            self._pump_tls()
            return
        room = self.shared.limits.per_connection - len(self.buf)
        if len(data) > room:
            self.truncated = True
        self.buf += data[: max(room, 0)]
        if self.state == "sniff":
            self._sniff()
        if self.state == "plain":
            self._maybe_answer_http(self.buf, self.transport.write if self.transport else None)
        if self.truncated and not self.done:
            self.finish("limit")

    def eof_received(self) -> bool:
        return False  # half-close from the client: we close too (and record)

    def connection_lost(self, exc: Exception | None) -> None:
        self.finish("closed")

    # -- the protocols -------------------------------------------------------------------
    def _sniff(self) -> None:
        if not parse.looks_like_tls(bytes(self.buf[:3])):
            if len(self.buf) >= 3 or (self.buf and self.buf[0] != 0x16):
                self.state = "plain"
            return
        need = parse.tls_record_length(bytes(self.buf[:5]))
        if need is None or (len(self.buf) < need and not self.truncated):
            return  # wait for the whole ClientHello record
        self.sni = parse.tls_sni(bytes(self.buf))
        if not self.shared.terminate_tls:
            self.state = "hello"
            return
        self.state = "tls"
        try:
            ctx = self.shared.tls_context()
        except Exception as err:  # noqa: BLE001 - without a certificate, keep the hello raw
            self.shared.recorder.note(f"TLS termination unavailable: {err!r}")
            self.shared.terminate_tls = False
            self.state = "hello"
            return
        self.tls = ctx.wrap_bio(self.tls_in, self.tls_out, server_side=True)
        self.tls_in.write(bytes(self.buf))
        self._pump_tls()

    def _pump_tls(self) -> None:
        assert self.tls is not None
        try:
            if not self.handshaken:
                self.tls.do_handshake()
                self.handshaken = True
            while True:
                chunk = self.tls.read(65536)
                if not chunk:
                    break
                room = self.shared.limits.per_connection - len(self.plain)
                self.truncated = self.truncated or len(chunk) > room
                self.plain += chunk[: max(room, 0)]
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass
        except ssl.SSLError:
            self._flush_tls()  # our alert, if any
            self.finish("tls-refused")  # e.g. a client that checks the certificate
            return
        self._flush_tls()
        if self.plain:
            self._maybe_answer_http(self.plain, self._tls_write)

    def _tls_write(self, data: bytes) -> None:
        assert self.tls is not None
        try:
            self.tls.write(data)
        except ssl.SSLError:
            return
        self._flush_tls()

    def _flush_tls(self) -> None:
        out = self.tls_out.read()
        if out and self.transport is not None:
            self.transport.write(out)

    def _maybe_answer_http(self, data: bytearray, write: Callable[[bytes], None] | None) -> None:
        req = parse.http_request(bytes(data[: parse.HEAD_LIMIT]))
        if req is None or not req.complete or write is None:
            return
        head_end = data.find(b"\r\n\r\n")
        head_len = head_end + 4 if head_end >= 0 else data.find(b"\n\n") + 2
        want = min(_body_expected(bytes(data[:head_len])), self.shared.limits.per_connection)
        if len(data) - head_len < want and not self.truncated:
            return  # the body is still coming (bounded by the idle timer and the cap)
        write(http_response(req.method, self.shared.body))
        self.finish("answered")

    # -- the end -------------------------------------------------------------------------
    def _read_what_is_left(self) -> None:
        """The run ends: bytes the client sent that the loop has not delivered yet are still
        in the socket; take them without waiting (not for TLS: they would need decrypting)."""
        sock = self.transport.get_extra_info("socket") if self.transport else None
        if sock is None or self.state == "tls":
            return
        room = self.shared.limits.per_connection - len(self.buf)
        with contextlib.suppress(OSError):
            while room > 0 and (chunk := os.read(sock.fileno(), room)):
                self.buf += chunk
                room -= len(chunk)
        if self.state == "sniff" and parse.looks_like_tls(bytes(self.buf[:3])):
            self.sni = parse.tls_sni(bytes(self.buf))

    def _rearm_idle(self) -> None:
        if self.timers:
            self.timers[0].cancel()
            loop = asyncio.get_running_loop()
            self.timers[0] = loop.call_later(self.shared.limits.idle, self.finish, "idle")

    def finish(self, ended: str) -> None:
        if self.done:
            return
        self.done = True
        for timer in self.timers:
            timer.cancel()
        self.shared.open.discard(self)
        self.shared.release()
        if ended == "run-end" and self.transport is not None:
            self._read_what_is_left()
        terminated = self.handshaken
        self.shared.recorder.seen(
            Seen(
                peer=self.peer,
                port=self.port,
                proto="tls" if terminated else "tcp",
                data=bytes(self.plain if terminated else self.buf),
                tls_sni=self.sni,
                truncated=self.truncated,
                ended=ended,
            )
        )
        if self.transport is not None:
            if ended in ("answered", "tls-refused"):
                self.transport.close()  # after what we wrote is sent
            else:
                self.transport.abort()


class DnsOverTcp(asyncio.Protocol):
    """RFC 1035 §4.2.2: each message is prefixed with its length; bounded by the same caps."""

    def __init__(self, shared: Shared, names: Names) -> None:
        self.shared = shared
        self.names = names
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.server = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server = plain_address(str((transport.get_extra_info("sockname") or ("",))[0]))
        limits = self.shared.limits
        self.timer = asyncio.get_running_loop().call_later(limits.lifetime, transport.abort)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buf += data
        while len(self.buf) >= 2:
            size = int.from_bytes(self.buf[:2], "big")
            if size > dns.MAX_QUERY:
                self.transport.abort()
                return
            if len(self.buf) < 2 + size:
                return
            query, self.buf = bytes(self.buf[2 : 2 + size]), self.buf[2 + size :]
            reply, asked = dns.answer(query, self.names)
            self.shared.recorder.dns(asked, "tcp", self.server)
            if reply is not None:
                self.transport.write(len(reply).to_bytes(2, "big") + reply)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.shared.release()
