"""What the simulated internet saw, turned into event records for the supervisor and payload
files for the run's artifacts. One writer, in the server process; the supervisor numbers the
records and checks each one (`events.from_record`) before it becomes an event."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import queue
import threading
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
    connections: int = 512  # open at once; more wait in the kernel's backlog
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
        self._pending: list[str] = []
        self._scheduled = False
        self._by_sha: dict[str, str] = {}
        self._files: queue.SimpleQueue[tuple[str, bytes] | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None  # the same payload is kept once per run
        self.counts = {"paused": 0, "datagrams_dropped": 0, "unstored": 0}

    def _send(self, event: events.Dns | events.Capture | events.Msg) -> None:
        """Queue one record; they are written together once the loop has handled the
        current burst (one write per turn instead of one per record: a 10,000-connection
        flood otherwise spends most of its time in write)."""
        self._pending.append(json.dumps(events.as_dict(event), separators=(",", ":")))
        if len(self._pending) >= 512:
            self.flush()
        elif not self._scheduled:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
                self._scheduled = True
            except RuntimeError:  # no loop (the end of the run): write at once
                self.flush()

    def flush(self) -> None:
        self._scheduled = False
        if not self._pending:
            return
        data = ("\n".join(self._pending) + "\n").encode("utf-8", "backslashreplace")
        self._pending.clear()
        view = memoryview(data)
        try:
            while view:  # blocking: a slow supervisor slows us down, nothing is dropped
                view = view[os.write(self.fd, view) :]
        except OSError:
            os._exit(1)  # the supervisor is gone (EPIPE): nobody can see us; end at once

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
                artifact=self._store(data, sha) if sha else None,
            )
        )

    def _store(self, data: bytes, sha: str) -> str | None:
        """Keep the payload as a file named by a fresh id (the artifact's id); None when
        there is no folder or the run's store budget is spent. Files are written off the
        loop (see `_write_files`); a repeated payload (a beacon's heartbeat) is kept once."""
        if self.folder is None:
            return None
        if sha in self._by_sha:
            return self._by_sha[sha]
        if self.stored + len(data) > self.limits.stored:
            self.counts["unstored"] += 1
            return None
        ident = _uuid4()
        self._files.put((os.path.join(self.folder, ident), data))
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_files, name="captures")
            self._writer.start()
        self.stored += len(data)
        self._by_sha[sha] = ident
        return ident

    def _write_files(self) -> None:
        """The writer thread: creating a file costs 0.2-1 ms on this disk (ext4, measured
        185 µs idle and ~1 ms under load), more than the rest of a connection, so the loop
        hands files over instead of waiting."""
        while (item := self._files.get()) is not None:
            path, data = item
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except OSError:
                continue  # the folder went away: the event still has the sha256
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)

    def close(self) -> None:
        """Write what is queued and stop the writer thread."""
        self.flush()
        if self._writer is not None:
            self._files.put(None)
            self._writer.join()

    def summary(self) -> None:
        """At the end: what the bounds turned away, if anything."""
        c = self.counts
        parts = [
            f"accepting paused {c['paused']} times at the cap of {self.limits.connections} "
            "open connections"
            if c["paused"]
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
