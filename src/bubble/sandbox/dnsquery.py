"""DNS queries in what a target sends: `dns_name` / `dns_type` for the event.

The payload is hostile: it is bounded by the caller (one UDP query, 512 bytes), checked
against the shape of a query header before anything is parsed, parsed with dnslib, and
whatever goes wrong in there (a pointer loop, a bad label, a truncated record) ends as "not
a query", never as an exception in the supervisor. dnslib is imported on the first payload
that looks like a query: its import costs 27-39 ms, which a run that never resolves a name
should not pay.
"""

from __future__ import annotations

import struct

TYPE_CHECKING = False  # `typing` costs start-up time; mypy still reads this block
if TYPE_CHECKING:
    from typing import Any

MAX_QUERY = 512  # a classic UDP DNS message; longer payloads are cut here before parsing
MAX_QUESTIONS = 8  # a query asks one question; a few more are tolerated, not a flood
_HEADER = struct.Struct(">HHHHHH")


def looks_like_query(data: bytes) -> bool:
    """A cheap check of the 12-byte header: a standard query (QR 0, opcode 0) with one to a
    few questions, no answers or authority records, and room for one question."""
    if len(data) < 17:
        return False
    _id, flags, qd, an, ns, _ar = _HEADER.unpack_from(data)
    return flags & 0xF800 == 0 and 1 <= qd <= MAX_QUESTIONS and an == 0 and ns == 0


def _label_text(label: bytes) -> str:
    # Labels are bytes: keep printable ASCII, escape the rest so no byte is lost or invented.
    if all(32 < b < 127 and b not in (0x2E, 0x5C) for b in label):
        return label.decode("ascii")
    return "".join(
        chr(b) if 32 < b < 127 and b not in (0x2E, 0x5C) else f"\\{b:03d}" for b in label
    )


def questions(data: bytes) -> list[tuple[str, str]]:
    """(name, type) for each question of `data` if it is a DNS query (TCP's two-byte length
    prefix accepted), else []. Never raises."""
    data = data[:MAX_QUERY]
    if not looks_like_query(data):
        if len(data) > 2 and struct.unpack_from(">H", data)[0] == len(data) - 2:
            data = data[2:]  # DNS over TCP: a length, then the message
        if not looks_like_query(data):
            return []
    try:
        from dnslib import QTYPE, DNSRecord
    except ImportError:  # a broken install: say so in the event rather than lose the query
        return [("<undecoded: dnslib is not installed>", "?")]
    try:
        record = DNSRecord.parse(data)
        out = []
        for q in record.questions[:MAX_QUESTIONS]:
            name = ".".join(_label_text(bytes(label)) for label in q.qname.label) or "."
            try:
                kind = str(QTYPE[q.qtype])
            except Exception:  # noqa: BLE001 - dnslib's lookup error for unknown types
                kind = f"TYPE{q.qtype}"
            out.append((name, kind))
        return out
    except Exception:  # noqa: BLE001 - hostile bytes: whatever dnslib raises means "no query"
        return []


def fields(payloads: list[bytes]) -> dict[str, Any]:
    """Event fields for the DNS queries among `payloads` (one per message of the call):
    `dns_name` and `dns_type` of the first question, and with more than one question (glibc
    asks A and AAAA in one sendmmsg) `dns_type` lists every type and `dns_queries` every
    "name TYPE" pair."""
    asked = [q for data in payloads for q in questions(data)]
    if not asked:
        return {}
    out: dict[str, Any] = {"dns_name": asked[0][0]}
    types = list(dict.fromkeys(kind for _name, kind in asked))
    out["dns_type"] = ",".join(types)
    if len(asked) > 1:
        out["dns_queries"] = [f"{name} {kind}" for name, kind in asked]
    return out
