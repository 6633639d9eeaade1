"""Bubble's events in Sigma's Linux taxonomy: which log source each event is, and its fields.

One table says which Sigma field name reads which key of a Bubble record; `pipeline()` turns
it into a pySigma processing pipeline (field mappings conditioned on the log source), and
`records()` turns events into the records those mapped rules are matched against. A denied
attempt yields the same record as a performed one, with `Outcome: denied`.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Iterator
from typing import Any

from bubble.analysis.tree import strs

# log source (category or service) -> Sigma field -> Bubble record key.
FIELDS: dict[str, dict[str, str]] = {
    "process_creation": {
        "Image": "exe",
        "CommandLine": "command_line",
        "ParentImage": "parent_exe",
        "ParentCommandLine": "parent_command_line",
        "User": "user",
        "ProcessId": "pid",
        "ParentProcessId": "ppid",
        "CurrentDirectory": "cwd",
    },
    "file_event": {
        "TargetFilename": "path",
        "Image": "exe",
        "Operation": "syscall",
        "Flags": "flags",
    },
    "file_delete": {"TargetFilename": "path", "Image": "exe", "Operation": "syscall"},
    "file_change": {
        "TargetFilename": "path",
        "Image": "exe",
        "Operation": "syscall",
        "Mode": "mode_octal",
        "Executable": "mode_exec",
        "Setuid": "mode_setuid",
    },
    "network_connection": {
        "DestinationIp": "peer",
        "DestinationPort": "port",
        "DestinationHostname": "host",
        "Protocol": "proto",
        "Image": "exe",
        "Initiated": "initiated",
    },
    "dns_query": {"QueryName": "dns_name", "QueryType": "dns_type", "Image": "exe"},
    # Sigma's auditd service: every mediated call as a SYSCALL record, so public auditd rules
    # (`SYSCALL: init_module`) read Bubble's calls too.
    "auditd": {
        "type": "audit_type",
        "SYSCALL": "syscall",
        "exe": "exe",
        "pid": "pid",
        "success": "success",
        "name": "path",
        "key": "category",
    },
}
# Fields every record has, whatever its source: the outcome, so a rule may ask for it.
COMMON = {"Outcome": "outcome"}

_DELETE = frozenset({"unlink", "unlinkat", "rmdir"})
_CHANGE_PREFIXES: tuple[str, ...] = ("chmod", "fchmod", "chown", "fchown", "lchown", "utime")
_CHANGE_PREFIXES += ("futimesat", "setxattr", "lsetxattr", "fsetxattr", "removexattr")
_CHANGE_PREFIXES += ("lremovexattr", "fremovexattr", "ioctl")
_RENAME = frozenset({"rename", "renameat", "renameat2"})
_IP_FAMILIES = frozenset({"AF_INET", "AF_INET6"})


def pipeline() -> Any:
    """A pySigma processing pipeline mapping Sigma's field names to Bubble's record keys."""
    from sigma.processing.conditions import LogsourceCondition
    from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
    from sigma.processing.transformations import FieldMappingTransformation

    items = []
    for source, mapping in FIELDS.items():
        cond = (
            LogsourceCondition(product="linux", service=source)
            if source == "auditd"
            else LogsourceCondition(category=source)
        )
        items.append(
            ProcessingItem(
                identifier=f"bubble_{source}",
                transformation=FieldMappingTransformation(dict(mapping | COMMON)),  # type: ignore[arg-type]
                rule_conditions=[cond],
            )
        )
    return ProcessingPipeline(name="bubble events to Sigma's Linux taxonomy", items=items)


def source_of(logsource: Any) -> str | None:
    """The table's key for a rule's log source, or None when Bubble has no such events."""
    if logsource.product not in (None, "linux"):
        return None
    if logsource.service == "auditd":
        return "auditd"
    if logsource.category in FIELDS and logsource.service is None:
        return logsource.category
    return None


def _outcome(event: dict[str, Any]) -> str:
    return "denied" if event.get("type") in ("policy.alert", "policy.ask") else "allowed"


def file_source(syscall: str) -> str:
    """Which Sigma file category a mediated file call belongs to."""
    if syscall in _DELETE:
        return "file_delete"
    if syscall.startswith(_CHANGE_PREFIXES):
        return "file_change"
    return "file_event"


def records(
    events: Iterable[dict[str, Any]], exe_of: dict[int, str], cmd_of: dict[int, str]
) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """(seq, source, record) for every event that Sigma rules can read. `exe_of`/`cmd_of`:
    the program and command line of each pid, as the report's tree knows them."""
    user = None
    for event in events:
        seq = event.get("seq")
        if not isinstance(seq, int):
            continue
        etype = event.get("type")
        pid: int = event["pid"] if isinstance(event.get("pid"), int) else 0
        base = {"outcome": _outcome(event), "pid": pid, "exe": exe_of.get(pid, "")}
        if etype == "process.spawn":
            argv = strs(event.get("argv"))
            user = event.get("user") if event.get("action") == "launcher.start" else user
            ppid: int = event["ppid"] if isinstance(event.get("ppid"), int) else 0
            yield (
                seq,
                "process_creation",
                base
                | {
                    "exe": str(event.get("exe") or ""),
                    "command_line": shlex.join(argv),
                    "parent_exe": exe_of.get(ppid, ""),
                    "parent_command_line": cmd_of.get(ppid, ""),
                    "user": user or "",
                    "ppid": ppid,
                    "cwd": str(event.get("cwd") or ""),
                },
            )
            continue
        syscall = event.get("syscall")
        if not isinstance(syscall, str):
            if etype == "net.dns" and event.get("dns_name"):
                yield seq, "dns_query", base | _dns(event)
            continue
        category = event.get("category")
        yield (
            seq,
            "auditd",
            base
            | {
                "audit_type": "SYSCALL",
                "syscall": syscall,
                "success": "no" if base["outcome"] == "denied" else "yes",
                "path": str(event.get("path") or ""),
                "category": str(category or ""),
            },
        )
        if category == "fs":
            yield from _file_records(seq, syscall, event, base)
        elif category == "net":
            if event.get("dns_name"):
                yield seq, "dns_query", base | _dns(event)
            if _s(event.get("family_name")) in _IP_FAMILIES and "port" in event:
                yield (
                    seq,
                    "network_connection",
                    base
                    | {
                        "peer": str(event.get("peer") or ""),
                        "port": event.get("port"),
                        "host": str(event.get("http_host") or event.get("tls_sni") or ""),
                        "proto": "udp" if "DGRAM" in str(event.get("sock_type") or "") else "tcp",
                        "initiated": "true",
                    },
                )


def _s(v: Any) -> str:
    return v if isinstance(v, str) else ""


def _dns(event: dict[str, Any]) -> dict[str, Any]:
    return {"dns_name": str(event.get("dns_name")), "dns_type": str(event.get("dns_type") or "")}


def _file_records(
    seq: int, syscall: str, event: dict[str, Any], base: dict[str, Any]
) -> Iterator[tuple[int, str, dict[str, Any]]]:
    path = str(event.get("path") or "")
    if syscall in _RENAME:
        # A rename deletes its source name and creates its target.
        yield seq, "file_delete", base | {"path": path, "syscall": syscall}
        yield seq, "file_event", base | {"path": str(event.get("path2") or ""), "syscall": syscall}
        return
    record = base | {"path": path, "syscall": syscall, "flags": str(event.get("flags") or "")}
    mode = event.get("mode")
    if isinstance(mode, int) and not isinstance(mode, bool):
        record |= {
            "mode_octal": f"{mode & 0o7777:04o}",
            "mode_exec": bool(mode & 0o111),
            "mode_setuid": bool(mode & 0o6000),
        }
    yield seq, file_source(syscall), record
