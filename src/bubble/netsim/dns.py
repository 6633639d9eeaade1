"""The DNS server's answers: every A/AAAA query gets the address `names.Names` chose for the
name; PTR for one of our addresses gets the name back; any other type gets NOERROR with no
answer (the name exists, it just has no such record). dnslib does the wire format."""

from __future__ import annotations

from dataclasses import dataclass

from dnslib import AAAA, PTR, QTYPE, RCODE, RR, A, DNSError, DNSRecord

from bubble.netsim.names import Names, normalise

TTL = 60
MAX_QUERY = 4096  # bytes; a question is < 300, EDNS lets a client ask for more room


@dataclass(frozen=True, slots=True)
class Asked:
    """One question as the net.dns event reports it."""

    name: str
    qtype: str
    answer: str  # the address given, the PTR name, or "" for none


def _reverse(name: str) -> str | None:
    """The address a PTR name stands for ("3.0.18.198.in-addr.arpa" -> "198.18.0.3")."""
    labels = normalise(name).split(".")
    if labels[-2:] == ["in-addr", "arpa"] and len(labels) == 6:
        return ".".join(reversed(labels[:4]))
    if labels[-2:] == ["ip6", "arpa"] and len(labels) == 34:
        nibbles = "".join(reversed(labels[:32]))
        return ":".join(nibbles[i : i + 4] for i in range(0, 32, 4))
    return None


def answer(query: bytes, names: Names) -> tuple[bytes | None, list[Asked]]:
    """The reply to a query in wire format (None: not a query, stay silent) and what was asked.
    Hostile input is expected: anything dnslib cannot parse is not answered."""
    if len(query) > MAX_QUERY:
        return None, []
    try:
        request = DNSRecord.parse(query)
    except (DNSError, ValueError, IndexError, UnicodeError):
        return None, []
    if request.header.qr or not request.questions:
        return None, []  # a response, or nothing asked
    reply = request.reply()
    if request.header.opcode != 0:
        reply.header.rcode = RCODE.NOTIMP
        return _pack(reply), []
    asked = []
    for question in request.questions[:8]:  # a real query holds one
        name = str(question.qname)
        qtype = QTYPE.get(question.qtype)
        text = ""
        if question.qtype == QTYPE.A:
            text = names.v4(name)
            reply.add_answer(RR(question.qname, QTYPE.A, rdata=A(text), ttl=TTL))
        elif question.qtype == QTYPE.AAAA:
            text = names.v6(name)
            reply.add_answer(RR(question.qname, QTYPE.AAAA, rdata=AAAA(text), ttl=TTL))
        elif question.qtype == QTYPE.PTR:
            address = _reverse(name)
            known = names.name_of(address) if address else None
            if known:
                text = known
                reply.add_answer(RR(question.qname, QTYPE.PTR, rdata=PTR(known), ttl=TTL))
            else:
                reply.header.rcode = RCODE.NXDOMAIN
        asked.append(Asked(normalise(name), str(qtype), text))
    return _pack(reply), asked


def _pack(reply: DNSRecord) -> bytes | None:
    try:
        return bytes(reply.pack())
    except (DNSError, ValueError, IndexError, UnicodeError):
        return None  # a name dnslib parsed but cannot write back (e.g. an over-long label)
