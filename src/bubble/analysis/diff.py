"""`bubble diff A B`: what two runs tried, compared by operation and place, not by seq or pid.

An attempt is keyed by (operation, target): the syscall (or `exec` for a spawn) and the path,
`peer:port` or detail it named. Digits in a path are read as a pattern (`/proc/4711/fd/3` and
`/proc/4802/fd/3` are one place; so are `/tmp/x1` and `/tmp/x2`), so two runs of the same
program compare equal although pids and counters differ. Each key gets the decisions seen
(`denied`, `allowed`) and a count per run.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_DIGITS = re.compile(r"\d+")
_DENIED, _ALLOWED = "denied", "allowed"


def _target(e: dict[str, Any]) -> str:
    if e.get("type") == "process.spawn":
        return str(e.get("exe", ""))
    if e.get("port") is not None and e.get("peer"):
        return f"{e['peer']}:{e['port']}"
    for key in ("path", "peer", "domain", "detail"):
        value = e.get(key)
        if value:
            text = str(value)
            if key == "path" and e.get("path2") and e.get("syscall", "").startswith(("ren", "lin")):
                text += f" -> {e['path2']}"
            return _DIGITS.sub("#", text) if key in ("path", "detail") else text
    return ""


def attempts(events: Iterable[dict[str, Any]]) -> Counter[tuple[str, str, str]]:
    """(operation, target, decision) -> count, for every call the run tried."""
    out: Counter[tuple[str, str, str]] = Counter()
    for e in events:
        kind = e.get("type", "")
        if kind == "policy.alert":
            decision = _DENIED
        elif e.get("syscall") and kind.startswith(("fs.write", "net.", "process.spawn")):
            decision = _ALLOWED
        else:
            continue
        op = "exec" if kind == "process.spawn" else str(e.get("syscall", "?"))
        out[(op, _target(e), decision)] += 1
    return out


def diff(
    a: Iterable[dict[str, Any]], b: Iterable[dict[str, Any]]
) -> dict[str, list[dict[str, Any]]]:
    """`{"only_a": [...], "only_b": [...], "changed": [...]}`, each sorted by operation and
    target. An item: `operation`, `target`, and per side `decisions` and `count`."""
    ca, cb = attempts(a), attempts(b)
    keys_a = _by_key(ca)
    keys_b = _by_key(cb)
    only_a, only_b, changed = [], [], []
    for key in sorted(keys_a.keys() | keys_b.keys()):
        da, db = keys_a.get(key), keys_b.get(key)
        item: dict[str, Any] = {"operation": key[0], "target": key[1]}
        if db is None:
            only_a.append({**item, **_side(da)})
        elif da is None:
            only_b.append({**item, **_side(db)})
        elif set(da) != set(db):
            changed.append({**item, "a": _side(da), "b": _side(db)})
    return {"only_a": only_a, "only_b": only_b, "changed": changed}


def _by_key(c: Counter[tuple[str, str, str]]) -> dict[tuple[str, str], dict[str, int]]:
    out: dict[tuple[str, str], dict[str, int]] = {}
    for (op, target, decision), n in c.items():
        out.setdefault((op, target), {})[decision] = n
    return out


def _side(decisions: dict[str, int] | None) -> dict[str, Any]:
    d = decisions or {}
    return {"decisions": sorted(d), "count": sum(d.values())}


def to_text(result: dict[str, list[dict[str, Any]]], name_a: str = "A", name_b: str = "B") -> str:
    lines: list[str] = []
    for key, title in (("only_a", f"Only in {name_a}"), ("only_b", f"Only in {name_b}")):
        rows = result[key]
        lines.append(f"{title}: {len(rows)}")
        lines += [
            f"  {r['operation']:<10} {r['target']}  ({'/'.join(r['decisions'])} x{r['count']})"
            for r in rows
        ]
    rows = result["changed"]
    lines.append(f"Decided differently: {len(rows)}")
    lines += [
        f"  {r['operation']:<10} {r['target']}  {name_a}: {'/'.join(r['a']['decisions'])}"
        f" x{r['a']['count']}  {name_b}: {'/'.join(r['b']['decisions'])} x{r['b']['count']}"
        for r in rows
    ]
    return "\n".join(lines) + "\n"
