"""The report as a short text summary: what a person at a terminal wants first."""

from __future__ import annotations

import shlex
from typing import Any

from bubble.eventline import safe

_SEV = {"critical": "CRIT", "high": "HIGH", "medium": "MED ", "low": "LOW "}
_SEV["informational"] = "INFO"
MAX_ROWS = 20  # per section: the JSON report has everything


def summary(report: dict[str, Any]) -> str:
    out: list[str] = []
    run = report["run"]
    out.append(f"Behaviour report: {safe(run.get('command_line') or '?')}")
    if run.get("signal") is not None:
        how = f"killed by signal {run['signal']}"
    elif run.get("exit_code") is not None:
        how = f"exit {run['exit_code']}"
    else:
        how = "did not finish" if not run.get("complete") else "no exit status"
    dur = f", {run['duration_ms']} ms" if run.get("duration_ms") is not None else ""
    limits = f", limit hit: {', '.join(run['limits_hit'])}" if run.get("limits_hit") else ""
    out.append(f"  {how}{dur}{limits}; user {safe(run.get('user') or '(same as bubble)')}")
    for err in run.get("errors") or ():
        out.append(f"  error: {safe(err.get('message'))} (hint: {safe(err.get('hint'))})")
    c = report["counts"]
    out.append(
        f"  {c['events']} events, {c['alerts']} denied, {c['processes']} processes, "
        f"{c['signatures']} signatures"
    )
    sigs = report["signatures"]
    if sigs:
        out.append("\nSignatures")
        for s in sigs[:MAX_ROWS]:
            attack = ",".join(s["attack"])
            seqs = ",".join(str(n) for n in s["events"][:8])
            more = "…" if len(s["events"]) > 8 else ""
            out.append(
                f"  {_SEV.get(s['severity'], '    ')} {safe(s['title'])} [{attack}] "
                f"{s['outcome']} (events {seqs}{more})"
            )
    out.append("\nProcesses")
    todo = [(n, 1) for n in reversed(report["processes"])]
    shown = 0
    while todo and shown < 2 * MAX_ROWS:
        node, depth = todo.pop()
        shown += 1
        out.append("  " * depth + _process_line(node))
        todo.extend((k, depth + 1) for k in reversed(node["children"]))
    if todo:
        out.append(f"  … {len(todo)} more")
    files = report["files"]["mutations"]
    if files:
        out.append("\nFiles")
        for f in files[:MAX_ROWS]:
            target = f" -> {safe(f['path2'])}" if f.get("path2") else ""
            times = f" x{f['count']}" if f["count"] > 1 else ""
            out.append(f"  {f['decision']:<7} {f['operation']:<9} {safe(f['path'])}{target}{times}")
        if len(files) > MAX_ROWS:
            out.append(f"  … {len(files) - MAX_ROWS} more")
    for key in ("created", "modified", "deleted"):
        for item in report["files"][key][:MAX_ROWS]:
            sha = f" sha256 {item['sha256'][:16]}…" if item.get("sha256") else ""
            out.append(f"  {key:<7} {safe(item.get('name'))}{sha}")
    net = report["network"]
    if net["endpoints"] or net["dns"]:
        out.append("\nNetwork")
        for ep in net["endpoints"][:MAX_ROWS]:
            port = f":{ep['port']}" if ep.get("port") is not None else ""
            out.append(
                f"  {ep['decision']:<7} {ep['syscall']} {ep['proto']} "
                f"{safe(ep['peer'])}{port} x{ep['count']}"
            )
        for d in net["dns"][:MAX_ROWS]:
            out.append(f"  {d['decision']:<7} dns {safe(d['name'])} {safe(d.get('type') or '')}")
    if report["privileged"]:
        out.append("\nPrivileged calls")
        for p in report["privileged"][:MAX_ROWS]:
            detail = f" [{safe(p['detail'])}]" if p.get("detail") else ""
            out.append(f"  {p['decision']:<7} {p['syscall']}{detail} x{p['count']}")
    for err in report.get("rule_errors") or ():
        out.append(f"\nrule not loaded: {safe(err['file'])}: {safe(err['reason'])}")
    return "\n".join(out) + "\n"


def _process_line(node: dict[str, Any]) -> str:
    argv = node.get("argv") or ([node["exe"]] if node.get("exe") else ["?"])
    if node.get("signal") is not None:
        name = node.get("signal_name") or f"signal {node['signal']}"
        end = f"killed by {name}" + (", core dump refused" if node.get("core_suppressed") else "")
    elif node.get("exit_code") is not None:
        end = f"exit {node['exit_code']}"
    else:
        end = "end not seen"
    n = node.get("alerts") or 0
    alerts = f", {n} signature hit{'s' if n > 1 else ''}" if n else ""
    denied = f", {node['denied']} denied" if node.get("denied") else ""
    return f"[{node['pid']}] {safe(shlex.join(argv))[:200]} — {end}{denied}{alerts}"
