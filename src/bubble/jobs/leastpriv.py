"""The least-privilege loop on stored runs: the policy a run would have needed
(`analysis.suggest`) and what two runs tried differently (`analysis.diff`), computed from
the events in the store by the modules `bubble policy suggest` and `bubble diff` use.

Suggestions look at this machine's disk (a scope must exist when the run starts, so a
denied write's directory is walked up to one that exists, and a `mkdir -p` retry of a
directory that exists needs nothing): the same answer as the CLI on the machine that ran it.
"""

from __future__ import annotations

import shlex
from typing import Any

from bubble import scopes
from bubble.analysis.diff import diff
from bubble.analysis.suggest import suggest, to_toml
from bubble.jobs import schema
from bubble.jobs.behaviour import iter_stored_events
from bubble.jobs.store import Store


def suggest_policy(store: Store, run: dict[str, Any]) -> dict[str, Any]:
    """`{"toml": commented policy file, "policy": {"fs": ..., "net": ...}, "scopes": n,
    "notes": [...], "unscoped": [{seq, syscall, what}], "done": bool}` for one run."""
    found = suggest(iter_stored_events(store, run["id"]))
    write, connect = tuple(found.write), tuple(found.connect)
    return {
        "run": run["id"],
        "done": run["status"] in schema.TERMINAL,
        "toml": to_toml(found, f"run {run['id']}"),
        "policy": scopes.to_mapping(write, connect),
        "scopes": len(write) + len(connect),
        "notes": list(dict.fromkeys(found.notes)),
        "unscoped": [{"seq": q, "syscall": n, "what": w} for q, n, w in found.unscoped],
    }


def _side(run: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": run["id"],
        "num": run.get("num"),
        "status": run["status"],
        "command_line": run.get("command_line") or shlex.join(run["command"]),
        "created_at": run["created_at"],
    }


def diff_runs(store: Store, a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """`bubble diff`'s `{"only_a", "only_b", "changed"}` for two stored runs, with who A and
    B are and the count of each group."""
    events_a = iter_stored_events(store, a["id"])
    result: dict[str, Any] = diff(events_a, iter_stored_events(store, b["id"]))
    result["counts"] = {k: len(v) for k, v in result.items()}
    result["a"], result["b"] = _side(a), _side(b)
    return result
