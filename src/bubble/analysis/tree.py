"""The process tree of a run, from `process.spawn`, `process.end` and `process.exit` events.

Hostile input shapes it (pids and ppids are whatever the stream says), so it is built without
recursion, a ppid cycle cannot hide a process (unreached nodes are listed at the top), and
nesting is capped (`MAX_DEPTH`): a fork chain 10 000 deep must not break a JSON encoder.
"""

from __future__ import annotations

from typing import Any

from bubble import events as ev

MAX_DEPTH = 64


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def strs(v: Any) -> list[str]:
    """The strings of a list field (argv); anything else is no list at all."""
    return [a for a in v if isinstance(a, str)] if isinstance(v, list) else []


def _node(pid: int, seq: int, ts: Any) -> dict[str, Any]:
    return {
        "pid": pid,
        "ppid": None,
        "exe": None,
        "argv": None,
        "start": ts if isinstance(ts, str) else None,
        "start_seq": seq,
        "end": None,
        "exit_code": None,
        "signal": None,
        "signal_name": None,
        "core_suppressed": None,
        "execs": [],
        "events": 0,
        "denied": 0,
        "alerts": 0,
        "children": [],
    }


def build_tree(events: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[int, dict]]:
    """(top-level nodes, pid -> node). Events must be clean (int seq, str type)."""
    procs: dict[int, dict[str, Any]] = {}
    root: int | None = None
    for e in events:
        pid = _int(e.get("pid"))
        if pid is None:
            continue
        etype = e["type"]
        node = procs.get(pid)
        if node is None:
            node = procs[pid] = _node(pid, e["seq"], e.get("ts"))
        node["events"] += 1
        if etype == ev.ALERT:
            node["denied"] += 1
        elif etype == ev.SPAWN:
            _spawn(node, e)
            if e.get("action") == "launcher.start" and root is None:
                root = pid
        elif etype in (ev.END, ev.EXIT):
            _end(node, e)
    if root is not None:
        procs[root]["ppid"] = None  # the supervisor: not part of the tree
    return _link(procs, root), procs


def _spawn(node: dict[str, Any], e: dict[str, Any]) -> None:
    exe = e.get("exe") if isinstance(e.get("exe"), str) else None
    argv = strs(e.get("argv")) or None
    if exe is not None:
        node["exe"] = exe
    if argv is not None:
        node["argv"] = argv
    if node["ppid"] is None:
        node["ppid"] = _int(e.get("ppid"))
    if len(node["execs"]) < 20:
        node["execs"].append({"seq": e["seq"], "exe": exe, "argv": argv})


def _end(node: dict[str, Any], e: dict[str, Any]) -> None:
    node["end"] = e.get("ts") if isinstance(e.get("ts"), str) else None
    node["end_seq"] = e["seq"]
    node["exit_code"] = _int(e.get("exit_code"))
    node["signal"] = _int(e.get("signal"))
    name = e.get("signal_name")
    node["signal_name"] = name if isinstance(name, str) else None
    if isinstance(e.get("core_suppressed"), bool):
        node["core_suppressed"] = e["core_suppressed"]
    if node["ppid"] is None and e["type"] == ev.END:
        node["ppid"] = _int(e.get("ppid"))


def _link(procs: dict[int, dict[str, Any]], root: int | None) -> list[dict[str, Any]]:
    top: list[dict[str, Any]] = []
    for pid, node in procs.items():
        parent = node["ppid"]
        if parent is not None and parent in procs and parent != pid:
            procs[parent]["children"].append(node)
        elif root is not None and pid != root:
            procs[root]["children"].append(node)  # parent unknown (no process.end): the root's
        else:
            top.append(node)
    # Walk from the top without recursion; whatever a cycle kept out is listed at the top,
    # and whatever lies deeper than MAX_DEPTH is hung on its ancestor at that depth.
    seen: set[int] = set()
    todo = [(n, 0, n) for n in top]
    while todo:
        node, depth, anchor = todo.pop()
        seen.add(node["pid"])
        kids = node["children"]
        if depth >= MAX_DEPTH:
            node["children"] = []
            anchor["children"].extend(kids)
            anchor["depth_capped"] = True
            todo.extend((k, depth, anchor) for k in kids if k["pid"] not in seen)
            continue
        kids.sort(key=lambda n: n["start_seq"])
        for kid in kids:
            if kid["exe"] is None:  # forked without exec: still the parent's program
                kid["exe"], kid["argv"] = node["exe"], node["argv"]
        todo.extend((k, depth + 1, node) for k in kids if k["pid"] not in seen)
    for pid, node in procs.items():
        if pid not in seen:
            node["children"] = []  # a ppid cycle: break it
            top.append(node)
    top.sort(key=lambda n: n["start_seq"])
    return top
