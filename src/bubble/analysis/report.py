"""A run's behaviour report from its event stream: what the program tried, in which process,
and what that looks like (Sigma signatures with ATT&CK ids).

Pure: events in (dicts, as read from NDJSON or the store), a JSON-ready dict out. Events are
hostile input (a target shares stderr in `--events -` mode): every field is type-checked and a
malformed event is counted, never trusted or fatal.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from bubble import events as ev
from bubble.analysis import signatures, taxonomy
from bubble.analysis.tree import build_tree, strs

VERSION = 1
EVIDENCE_CAP = 50  # seqs kept per aggregated row: enough to find the events, bounded


def read_ndjson(path: str | Path) -> Iterator[dict[str, Any]]:
    """Events from an NDJSON file; a line that is not a JSON object is skipped."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                yield obj


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def clean(raw: Iterable[Any]) -> list[dict[str, Any]]:
    """Events that have an int `seq` and a str `type`, in seq order."""
    out = [e for e in raw if isinstance(e, dict) and _int(e.get("seq")) is not None]
    out = [e for e in out if isinstance(e.get("type"), str)]
    out.sort(key=lambda e: e["seq"])
    return out


def build(
    raw: Iterable[Any],
    *,
    ruleset: signatures.RuleSet | None = None,
    run: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The report of one run. `run`: what the caller knows beyond the events (the policy,
    the command as submitted); `ruleset`: defaults to Bubble's own rules."""
    events = clean(raw)
    rules = ruleset if ruleset is not None else signatures.load()
    tree, procs = build_tree(events)
    exe_of = {pid: p["exe"] for pid, p in procs.items() if p.get("exe")}
    cmd_of = {pid: shlex.join(p["argv"]) for pid, p in procs.items() if p.get("argv")}
    hits = signatures.evaluate(rules, taxonomy.records(events, exe_of, cmd_of))
    for hit in hits:
        for seq in hit["events"]:
            pid = _int(_by_seq(events, seq).get("pid"))
            if pid in procs:
                procs[pid]["alerts"] += 1
    return {
        "version": VERSION,
        "run": _run(events, run or {}),
        "processes": tree,
        "files": _files(events),
        "network": _network(events),
        "privileged": _privileged(events),
        "signatures": hits,
        "rule_errors": rules.errors,
        "counts": _counts(events, procs, hits),
    }


def _by_seq(events: list[dict[str, Any]], seq: int) -> dict[str, Any]:
    # Seqs are 1..N without gaps in a whole stream: try the direct index first.
    if 0 < seq <= len(events) and events[seq - 1]["seq"] == seq:
        return events[seq - 1]
    return next((e for e in events if e["seq"] == seq), {})


def _run(events: list[dict[str, Any]], given: dict[str, Any]) -> dict[str, Any]:
    start = next((e for e in events if e.get("action") == "launcher.start"), {})
    end: dict[str, Any] = next((e for e in reversed(events) if e["type"] == ev.EXIT), {})
    errors = [e for e in events if e["type"] == ev.ERROR]
    argv = strs(start.get("argv"))
    out: dict[str, Any] = {
        "command": given.get("command") or argv,
        "command_line": given.get("command_line") or shlex.join(argv),
        "policy": given.get("policy"),
        "user": _str(start.get("user")),
        "cwd": _str(start.get("cwd")),
        "pid": _int(start.get("pid")),
        "started": _str(start.get("ts")),
        "ended": _str(end.get("ts")),
        "exit_code": _int(end.get("exit_code")),
        "signal": _int(end.get("signal")),
        "duration_ms": _int(end.get("duration_ms")),
        "max_rss_kb": _int(end.get("max_rss_kb")),
        "timed_out": end.get("timed_out") is True,
        "limits_hit": [x for x in (_str(end.get("limit")),) if x],
        "complete": bool(end),
        "errors": [
            {"message": _str(e.get("message")), "hint": _str(e.get("hint"))} for e in errors
        ],
    }
    return out


_FS_OPS = {"open": "write", "openat": "write", "openat2": "write", "creat": "create"}


def _operation(syscall: str) -> str:
    """A word for what a file call does: write, create, delete, rename, chmod, …"""
    if syscall in _FS_OPS:
        return _FS_OPS[syscall]
    source = taxonomy.file_source(syscall)
    if source == "file_delete":
        return "delete"
    for word in ("rename", "chmod", "chown", "utime", "xattr", "link", "mkdir", "mknod"):
        if word in syscall:
            return "timestamps" if word == "utime" else word
    return "truncate" if "truncate" in syscall else "change" if source == "file_change" else "write"


def _decision(event: dict[str, Any]) -> str:
    return "denied" if event["type"] in (ev.ALERT, "policy.ask") else "allowed"


def _aggregate(rows: dict[tuple, dict[str, Any]], key: tuple, base: dict[str, Any], seq: int):
    row = rows.get(key)
    if row is None:
        row = rows[key] = base | {"count": 0, "events": []}
    row["count"] += 1
    if len(row["events"]) < EVIDENCE_CAP:
        row["events"].append(seq)


def _files(events: list[dict[str, Any]]) -> dict[str, Any]:
    rows: dict[tuple, dict[str, Any]] = {}
    dropped: dict[str, list[dict[str, Any]]] = {"created": [], "modified": [], "deleted": []}
    for e in events:
        if e["type"] == ev.FS_DROP:
            change = e.get("change")
            if isinstance(change, str):  # the layer's shape: one path
                item = _drop_item(e | {"name": e.get("path")})
                dropped[_LAYER_CHANGES.get(change, "modified")].append(item)
            for key, name in _DROP_KEYS:  # the orchestrator's: the working directory
                items = e.get(key)
                if isinstance(items, list):
                    dropped[name] += [_drop_item(i) for i in items if isinstance(i, dict)]
            continue
        if e.get("category") != "fs" or not isinstance(e.get("syscall"), str):
            continue
        path = _str(e.get("path")) or ""
        syscall = e["syscall"]
        decision = _decision(e)
        base = {"path": path, "operation": _operation(syscall), "syscall": syscall}
        base |= {"decision": decision, "pids": []}
        for extra in ("path2", "flags", "mode"):
            if e.get(extra) is not None:
                base[extra] = e[extra]
        _aggregate(rows, (path, syscall, decision, _str(e.get("path2"))), base, e["seq"])
        pid = _int(e.get("pid"))
        row = rows[(path, syscall, decision, _str(e.get("path2")))]
        if pid is not None and pid not in row["pids"] and len(row["pids"]) < EVIDENCE_CAP:
            row["pids"].append(pid)
    return {"mutations": list(rows.values()), **dropped}


_DROP_KEYS = (("files", "created"), ("modified", "modified"), ("deleted", "deleted"))
# A layer drop's `change` -> the list it goes to (`metadata`: mode or owner only).
_LAYER_CHANGES = {"created": "created", "renamed": "created", "deleted": "deleted"}


# What a drop item may carry; the last four only in the layer's shape.
_DROP_FIELDS = (
    *("name", "kind", "size", "size_before", "sha256", "artifact_id"),
    *("change", "path2", "target", "mode"),
)


def _drop_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: item[k] for k in _DROP_FIELDS if isinstance(item.get(k), str | int)}


def _network(events: list[dict[str, Any]]) -> dict[str, Any]:
    endpoints: dict[tuple, dict[str, Any]] = {}
    dns: dict[tuple, dict[str, Any]] = {}
    captures: list[dict[str, Any]] = []
    for e in events:
        if e["type"] == "net.capture":
            keys = ("peer", "port", "proto", "bytes", "http_request", "http_host", "tls_sni")
            if len(captures) < EVIDENCE_CAP:
                captures.append({k: e[k] for k in keys if e.get(k) is not None} | {"seq": e["seq"]})
            continue
        name = _str(e.get("dns_name"))
        if name is not None:
            dtype, decision = _str(e.get("dns_type")), _decision(e)
            row = {"name": name, "type": dtype, "decision": decision}
            _aggregate(dns, (name, dtype, decision), row, e["seq"])
        if e.get("category") != "net" or e.get("peer") is None:
            continue
        peer, port = _str(e.get("peer")) or "", _int(e.get("port"))
        proto = (
            "udp"
            if "DGRAM" in str(e.get("sock_type") or "")
            else ("unix" if e.get("family_name") == "AF_UNIX" else "tcp")
        )
        syscall = _str(e.get("syscall")) or ""
        decision = _decision(e)
        base = {"peer": peer, "port": port, "proto": proto, "syscall": syscall}
        key = (peer, port, proto, syscall, decision)
        _aggregate(endpoints, key, base | {"decision": decision}, e["seq"])
    return {"endpoints": list(endpoints.values()), "dns": list(dns.values()), "captures": captures}


def _privileged(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows: dict[tuple, dict[str, Any]] = {}
    for e in events:
        if e.get("category") != "sys" or not isinstance(e.get("syscall"), str):
            continue
        key = (e["syscall"], _decision(e), _str(e.get("detail")))
        base = {"syscall": key[0], "decision": key[1], "detail": key[2]}
        _aggregate(rows, key, base, e["seq"])
    return list(rows.values())


def _counts(
    events: list[dict[str, Any]], procs: dict[int, dict[str, Any]], hits: list[dict[str, Any]]
) -> dict[str, Any]:
    by_type: dict[str, int] = {}
    by_category: dict[str, int] = {}
    alerts = 0
    for e in events:
        by_type[e["type"]] = by_type.get(e["type"], 0) + 1
        if e["type"] == ev.ALERT:
            alerts += 1
            cat = _str(e.get("category")) or "other"
            by_category[cat] = by_category.get(cat, 0) + 1
    return {
        "events": len(events),
        "alerts": alerts,
        "processes": len(procs),
        "signatures": len(hits),
        "by_type": by_type,
        "alerts_by_category": by_category,
    }
