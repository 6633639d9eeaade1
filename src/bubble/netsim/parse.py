"""Bounded, total parsers for what a sample sends: an HTTP request head, a TLS ClientHello's
server name, a printable preview. Every function takes hostile bytes and returns a value or
None; none raises, loops without bound or reads past its input (property-tested)."""

from __future__ import annotations

from dataclasses import dataclass

HEAD_LIMIT = 8192  # bytes of an HTTP head we look at; real request heads are < 2 KiB
_METHODS = frozenset(
    b"GET HEAD POST PUT DELETE OPTIONS PATCH CONNECT TRACE PROPFIND MKCOL COPY MOVE".split()
)


@dataclass(frozen=True, slots=True)
class HttpRequest:
    line: str  # the request line, e.g. "GET /x HTTP/1.1"
    method: str
    path: str
    host: str | None
    complete: bool  # the head ended with an empty line


def _text(raw: bytes) -> str:
    return raw.decode("latin-1")


def http_request(data: bytes) -> HttpRequest | None:
    """The request line and Host of an HTTP/1.x request at the start of `data`, or None."""
    head = data[:HEAD_LIMIT]
    end = head.find(b"\r\n")
    if end < 0:
        end = head.find(b"\n")
    if end < 0:
        return None
    parts = head[:end].rstrip(b"\r").split(b" ")
    if len(parts) != 3 or parts[0] not in _METHODS or not parts[2].startswith(b"HTTP/1."):
        return None
    host = None
    body_at = head.find(b"\r\n\r\n")
    if body_at < 0:
        body_at = head.find(b"\n\n")
    complete = body_at >= 0
    for line in head[end : body_at if complete else len(head)].splitlines():
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() == b"host":
            host = _text(value.strip())
            break
    return HttpRequest(
        line=_text(head[:end].rstrip(b"\r")),
        method=_text(parts[0]),
        path=_text(parts[1]),
        host=host,
        complete=complete,
    )


def looks_like_tls(data: bytes) -> bool:
    """A TLS handshake record (content type 22, version 3.x) starts `data`."""
    return len(data) >= 3 and data[0] == 0x16 and data[1] == 0x03


def tls_record_length(data: bytes) -> int | None:
    """Bytes of the first TLS record including its header, once its header arrived."""
    if len(data) < 5:
        return None
    return 5 + int.from_bytes(data[3:5], "big")


class _Reader:
    """A cursor over bytes whose reads fail (None) instead of running past the end."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes | None:
        if n < 0 or self.pos + n > len(self.data):
            return None
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def number(self, width: int) -> int | None:
        raw = self.take(width)
        return None if raw is None else int.from_bytes(raw, "big")

    def vector(self, width: int) -> bytes | None:
        n = self.number(width)
        return None if n is None else self.take(n)


def tls_sni(data: bytes) -> str | None:
    """The server name of a TLS ClientHello at the start of `data` (the first record only;
    a hello split across records is rare and would still be terminated, just unnamed)."""
    if not looks_like_tls(data):
        return None
    record = _Reader(data[5 : tls_record_length(data)])
    if record.number(1) != 1:  # handshake type client_hello
        return None
    body = record.vector(3)
    if body is None:
        return None
    hello = _Reader(body)
    if hello.take(2 + 32) is None:  # version, random
        return None
    for width in (1, 2, 1):  # session id, cipher suites, compression methods
        if hello.vector(width) is None:
            return None
    extensions = hello.vector(2)
    if extensions is None:
        return None
    ext = _Reader(extensions)
    while True:
        kind = ext.number(2)
        payload = ext.vector(2)
        if kind is None or payload is None:
            return None
        if kind == 0:  # server_name
            return _server_name(payload)


def _server_name(payload: bytes) -> str | None:
    names = _Reader(payload)
    entries = names.vector(2)
    if entries is None:
        return None
    entry = _Reader(entries)
    while True:
        kind = entry.number(1)
        name = entry.vector(2)
        if kind is None or name is None:
            return None
        if kind == 0 and name:
            return name.decode("ascii", "backslashreplace")


def preview(data: bytes, limit: int) -> str:
    """Printable text of the first `limit` bytes: ASCII kept, tab and newline kept, every
    other byte shown as '.' (so the preview is safe to show and still readable)."""
    return "".join(chr(b) if 32 <= b < 127 or b in (9, 10, 13) else "." for b in data[:limit])
