"""What the simulated internet saw, turned into event records for the supervisor and payload
files for the run's artifacts. One writer, in the server process; the supervisor numbers the
records and checks each one (`events.from_record`) before it becomes an event."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

from bubble import events
from bubble.netsim import parse
from bubble.netsim.dns import Asked
from bubble.netsim.names import Names

HEX_BYTES = 256  # bytes shown as hex in the event; the whole payload is the artifact
TEXT_BYTES = 1024  # bytes shown as a printable preview


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds that keep a hostile client from exhausting the server (DESIGN §2.7)."""

    per_connection: int = 64 * 1024  # bytes read from one connection or datagram
    connections: int = 512  # open at once; more are refused and counted
    idle: float = 5.0  # seconds without data before a silent connection is recorded
    lifetime: float = 30.0  # seconds a connection may last at most (slowloris)
    datagrams: int = 20_000  # UDP datagrams recorded per run; more are counted
    stored: int = 32 * 1024 * 1024  # payload bytes kept as artifacts per run


@dataclass(frozen=True, slots=True)
class Seen:
    """One finished connection or datagram as the sinkhole hands it over."""

    peer: str  # where the target sent it (the original destination)
    port: int
    proto: str  # tcp | udp | tls (terminated: `data` is the plaintext)
    data: bytes
    tls_sni: str | None = None
    truncated: bool = False
    ended: str = "closed"


class Recorder:
    """Writes records as JSON lines on `fd` (a pipe to the supervisor) and payloads into
    `folder` (or keeps none when it is None)."""

    def __init__(self, fd: int, names: Names, folder: str | None, limits: Limits) -> None:
        self.fd = fd
        self.names = names
        self.folder = folder
        self.limits = limits
        self.stored = 0
        self.counts = {"refused": 0, "datagrams_dropped": 0, "unstored": 0}

    def _send(self, event: events.Dns | events.Capture | events.Msg) -> None:
        line = json.dumps(events.to_record(event), separators=(",", ":")) + "\n"
        view = memoryview(line.encode("utf-8", "backslashreplace"))
        while view:  # blocking: a slow supervisor slows us down, nothing is dropped
            view = view[os.write(self.fd, view) :]

    def dns(self, asked: list[Asked], proto: str, server: str) -> None:
        for q in asked:
            self._send(
                events.Dns(
                    dns_name=q.name, dns_type=q.qtype, answer=q.answer, proto=proto, peer=server
                )
            )

    def note(self, message: str) -> None:
        self._send(events.Msg(action="net-sim", message=message))

    def seen(self, s: Seen) -> None:
        data = s.data[: self.limits.per_connection]
        req = parse.http_request(data)
        sha = hashlib.sha256(data).hexdigest() if data else None
        self._send(
            events.Capture(
                peer=s.peer,
                port=s.port,
                proto=s.proto,
                bytes=len(data),
                hex=data[:HEX_BYTES].hex(),
                text=parse.preview(data, TEXT_BYTES),
                dns_name=self.names.name_of(s.peer),
                http_request=req.line if req else None,
                http_host=req.host if req else None,
                http_method=req.method if req else None,
                http_path=req.path if req else None,
                tls_sni=s.tls_sni,
                truncated=s.truncated or None,
                ended=s.ended,
                sha256=sha,
                artifact=self._store(data) if data else None,
            )
        )

    def _store(self, data: bytes) -> str | None:
        """Keep the payload as a file named by a fresh id (the artifact's id); None when
        there is no folder or the run's store budget is spent."""
        if self.folder is None:
            return None
        if self.stored + len(data) > self.limits.stored:
            self.counts["unstored"] += 1
            return None
        ident = _uuid4()
        fd = os.open(os.path.join(self.folder, ident), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        self.stored += len(data)
        return ident

    def summary(self) -> None:
        """At the end: what the bounds turned away, if anything."""
        c = self.counts
        parts = [
            f"{c['refused']} connections refused at the cap of {self.limits.connections}"
            if c["refused"]
            else "",
            f"{c['datagrams_dropped']} datagrams past the cap of {self.limits.datagrams}"
            if c["datagrams_dropped"]
            else "",
            f"{c['unstored']} payloads not kept (store budget {self.limits.stored} bytes spent)"
            if c["unstored"]
            else "",
        ]
        text = "; ".join(p for p in parts if p)
        if text:
            self.note(f"bounds reached: {text}")


def _uuid4() -> str:
    """A UUID4 in text (the artifact id format) without importing `uuid`."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
