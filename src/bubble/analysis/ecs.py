"""Elastic Common Schema documents, one per event, so a run loads into Elasticsearch,
OpenSearch or any SIEM as it is.

Field names and types follow the ECS reference (8.x): `event.category` and `event.type` are
arrays of the allowed values, `event.outcome` is `failure` for a denial, pids and ports are
longs, `destination.ip` an IP. What ECS has no name for (the syscall, the errno, the raw flags)
goes under `bubble.*`, the custom namespace ECS leaves to producers. Signature hits mark
their evidence events as `event.kind: alert` with `rule.*` and `threat.technique.id`.
"""

from __future__ import annotations

import ipaddress
import json
import posixpath
from collections.abc import Iterable, Iterator
from typing import Any

from bubble import events as ev
from bubble.analysis import taxonomy
from bubble.analysis.tree import strs

ECS_VERSION = "8.11.0"

_FILE_TYPES = {"file_event": "creation", "file_delete": "deletion", "file_change": "change"}


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _put(doc: dict[str, Any], dotted: str, value: Any) -> None:
    """Set a nested field, skipping values that are absent."""
    if value is None or value == [] or value == "":
        return
    node = doc
    *parents, last = dotted.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value


def _classify(e: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(event.category, event.type) from the event's type and syscall."""
    etype, cat = e["type"], e.get("category")
    denied = etype in (ev.ALERT, "policy.ask")
    verdict = ["denied"] if denied else []
    if etype == ev.SPAWN:
        return ["process"], ["start"]
    if etype in (ev.END, ev.EXIT):
        return ["process"], ["end"]
    if etype in (ev.ERROR,):
        return ["process"], ["error"]
    if etype == ev.FS_DROP:
        return ["file"], ["creation", "change"]
    if etype == "net.dns":
        return ["network"], ["protocol"]
    if etype == "net.capture":
        return ["network"], ["connection", "protocol"]
    if cat == "fs" and isinstance(e.get("syscall"), str):
        kind = _FILE_TYPES[taxonomy.file_source(e["syscall"])]
        return ["file"], [kind, *verdict] if denied else [kind, "allowed"]
    if cat == "net":
        return ["network"], ["connection", *(verdict or ["allowed"])]
    if cat == "sys":
        syscall = str(e.get("syscall") or "")
        category = ["driver"] if "module" in syscall else ["api"]
        return category, verdict or ["allowed"]
    return ["host"], ["info"]


def document(e: dict[str, Any], hits: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One ECS document for one (clean) event; `hits`: the signatures it is evidence for."""
    categories, types = _classify(e)
    denied = e["type"] in (ev.ALERT, "policy.ask")
    doc: dict[str, Any] = {"@timestamp": e.get("ts") if isinstance(e.get("ts"), str) else None}
    _put(doc, "ecs.version", ECS_VERSION)
    _put(doc, "event.kind", "alert" if hits else "event")
    _put(doc, "event.category", categories)
    _put(doc, "event.type", types)
    _put(doc, "event.action", e.get("syscall") if isinstance(e.get("syscall"), str) else e["type"])
    _put(doc, "event.sequence", e["seq"])
    _put(doc, "event.module", "bubble")
    _put(doc, "event.dataset", "bubble.events")
    if e.get("category") in ("fs", "net", "sys") or e["type"] == ev.ERROR:
        _put(doc, "event.outcome", "failure" if denied or e["type"] == ev.ERROR else "success")
    _put(doc, "event.reason", _str(e.get("detail")))
    _put(doc, "message", _str(e.get("message")))
    _process(doc, e)
    _file(doc, e)
    _network(doc, e)
    _put(doc, "error.message", _str(e.get("message")) if e["type"] == ev.ERROR else None)
    _put(doc, "user.name", _str(e.get("user")))
    for key in ("type", "syscall", "syscall_no", "category", "denied", "decision", "flags"):
        _put(doc, f"bubble.{key}", e.get(key) if isinstance(e.get(key), str | int) else None)
    _put(doc, "bubble.hint", _str(e.get("hint")))
    if hits:
        _rules(doc, hits)
    return doc


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _process(doc: dict[str, Any], e: dict[str, Any]) -> None:
    _put(doc, "process.pid", _int(e.get("pid")))
    _put(doc, "process.parent.pid", _int(e.get("ppid")))
    if e["type"] == ev.SPAWN:
        exe = _str(e.get("exe"))
        argv = strs(e.get("argv"))
        _put(doc, "process.executable", exe)
        _put(doc, "process.name", posixpath.basename(exe) if exe else None)
        _put(doc, "process.args", argv)
        _put(doc, "process.args_count", len(argv) if argv else None)
        _put(doc, "process.working_directory", _str(e.get("cwd")))
        _put(doc, "process.start", _str(e.get("ts")))
    elif e["type"] in (ev.END, ev.EXIT):
        _put(doc, "process.exit_code", _int(e.get("exit_code")))
        _put(doc, "process.end", _str(e.get("ts")))
        _put(doc, "bubble.signal", _int(e.get("signal")))
        _put(doc, "bubble.signal_name", _str(e.get("signal_name")))
        if isinstance(e.get("core_suppressed"), bool):
            _put(doc, "bubble.core_suppressed", e["core_suppressed"])


def _file(doc: dict[str, Any], e: dict[str, Any]) -> None:
    if e.get("category") != "fs":
        return
    path = _str(e.get("path"))
    if path and path.startswith("/"):
        _put(doc, "file.path", path)
        _put(doc, "file.name", posixpath.basename(path))
        _put(doc, "file.directory", posixpath.dirname(path))
    _put(doc, "file.target_path", _str(e.get("path2")))
    mode = _int(e.get("mode"))
    _put(doc, "file.mode", f"{mode & 0o7777:04o}" if mode is not None else None)


def _network(doc: dict[str, Any], e: dict[str, Any]) -> None:
    peer = _str(e.get("peer"))
    if peer:
        try:
            ip = ipaddress.ip_address(peer)
        except ValueError:
            _put(doc, "bubble.peer", peer)  # a UNIX socket path or a name: not an IP
        else:
            _put(doc, "destination.ip", str(ip))
            _put(doc, "network.type", f"ipv{ip.version}")
        _put(doc, "destination.port", _int(e.get("port")))
        proto = e.get("proto") if isinstance(e.get("proto"), str) else None
        if proto is None and e.get("family_name") in ("AF_INET", "AF_INET6"):
            proto = "udp" if "DGRAM" in str(e.get("sock_type") or "") else "tcp"
        _put(doc, "network.transport", proto)
    _put(doc, "destination.domain", _str(e.get("http_host")) or _str(e.get("tls_sni")))
    _put(doc, "dns.question.name", _str(e.get("dns_name")))
    _put(doc, "dns.question.type", _str(e.get("dns_type")))


def _rules(doc: dict[str, Any], hits: list[dict[str, Any]]) -> None:
    one = len(hits) == 1

    def field(key: str) -> Any:
        values = [str(h.get(key) or "") for h in hits]
        return values[0] if one else values

    _put(doc, "rule.id", field("id"))
    _put(doc, "rule.name", field("title"))
    _put(doc, "rule.description", field("description"))
    _put(doc, "rule.ruleset", "bubble-sigma")
    _put(doc, "event.severity", max(_SEVERITY.get(str(h.get("severity")), 21) for h in hits))
    techniques = sorted({t for h in hits for t in h.get("attack") or ()})
    if techniques:
        _put(doc, "threat.framework", "MITRE ATT&CK")
        _put(doc, "threat.technique.id", techniques)
    if "intrusion_detection" not in doc["event"]["category"]:
        doc["event"]["category"].append("intrusion_detection")
    if "indicator" not in doc["event"]["type"]:
        doc["event"]["type"].append("indicator")


_SEVERITY = {"informational": 21, "low": 21, "medium": 47, "high": 73, "critical": 99}


def documents(events: Iterable[dict[str, Any]], report: dict[str, Any]) -> Iterator[dict]:
    """ECS documents for clean events, marking the evidence of `report`'s signatures."""
    by_seq: dict[int, list[dict[str, Any]]] = {}
    for hit in report.get("signatures", ()):
        for seq in hit["events"]:
            by_seq.setdefault(seq, []).append(hit)
    for e in events:
        yield document(e, by_seq.get(e["seq"]))


def ndjson(events: Iterable[dict[str, Any]], report: dict[str, Any]) -> Iterator[str]:
    for doc in documents(events, report):
        yield json.dumps(doc, separators=(",", ":"), ensure_ascii=False) + "\n"
