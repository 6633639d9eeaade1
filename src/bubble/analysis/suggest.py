"""`bubble policy suggest`: the smallest policy that would have allowed what a run was denied.

Write scopes are directories, not single files: the place a denied call needed to write in
(the parent of a created, removed or renamed path). Where a program clearly writes a tree
(three or more sibling directories under one parent), the parent is proposed instead. Broad
places (`/`, `/etc`, `/usr`, home directories, `/tmp` itself, …) are never proposed wholesale
without `broad=True`: the narrower directories are kept and a comment says why. Each scope
carries a comment naming its evidence (the calls and their seqs).
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from bubble.scopes import BROAD_DIRS, covering

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# The calls a write scope can allow (Landlock re-checks them, or the supervisor performs them);
# kept in step with sandbox/decide.py by tests/unit/test_suggest_diff.py.
SCOPABLE = frozenset(
    {
        "open", "openat", "creat", "openat2", "unlink", "unlinkat", "rmdir", "rename",
        "renameat", "renameat2", "mkdir", "mkdirat", "mknod", "mknodat", "link", "linkat",
        "symlink", "symlinkat", "truncate", "chmod", "fchmod", "fchmodat", "fchmodat2", "utime",
        "utimes", "futimesat", "utimensat",
    }
)  # fmt: skip
_TWO_PATHS = frozenset({"rename", "renameat", "renameat2", "link", "linkat"})
_NEVER_WHOLE = BROAD_DIRS | {"/tmp", "/var/tmp", "/dev", "/proc", "/sys", "/run", "/var/log"}
_HOME = re.compile(r"^/home/[^/]+$")
TREE = 3  # sibling directories under one parent that make "a tree"


@dataclass
class Evidence:
    calls: list[tuple[int, str, str]] = field(default_factory=list)  # (seq, syscall, path)

    def comment(self, what: str = "write", limit: int = 3) -> str:
        shown = ", ".join(f"{s} {p} (seq {q})" for q, s, p in self.calls[:limit])
        more = f", +{len(self.calls) - limit} more" if len(self.calls) > limit else ""
        n = len(self.calls)
        return f"{n} denied {what}{'s' * (n != 1)}: {shown}{more}"


@dataclass
class Suggestion:
    write: dict[str, Evidence]
    connect: dict[str, Evidence]
    unscoped: list[tuple[int, str, str]]  # denied calls no scope can allow: (seq, syscall, what)
    notes: list[str]


def broad(path: str) -> bool:
    return path in _NEVER_WHOLE or bool(_HOME.match(path))


def _places(event: dict[str, Any]) -> list[str]:
    """The directories a denied fs call needed to write in."""
    paths = [event.get("path")]
    if event.get("syscall") in _TWO_PATHS:
        paths.append(event.get("path2"))
    out = []
    for path in paths:
        if not isinstance(path, str) or not path.startswith("/") or path == "/":
            return []
        out.append(os.path.dirname(os.path.normpath(path)))
    return out


def _existing(path: str, exists: bool) -> str:
    """Walk up to a directory that exists here (a scope must exist when the run starts)."""
    while exists and path != "/" and not os.path.isdir(path):
        path = os.path.dirname(path)
    return path


def suggest(
    events: Iterable[dict[str, Any]], allow_broad: bool = False, check_disk: bool = True
) -> Suggestion:
    places: dict[str, Evidence] = defaultdict(Evidence)
    connect: dict[str, Evidence] = defaultdict(Evidence)
    unscoped: list[tuple[int, str, str]] = []
    for e in events:
        if e.get("type") != "policy.alert":
            continue
        seq, name = int(e.get("seq", 0)), str(e.get("syscall", "?"))
        if name in ("mkdir", "mkdirat") and check_disk and os.path.isdir(str(e.get("path"))):
            continue  # `mkdir -p` retrying a directory that exists: denied, but nothing needed
        if e.get("category") == "fs" and name in SCOPABLE and (dirs := _places(e)):
            for d in dirs:
                places[_existing(d, check_disk)].calls.append((seq, name, str(e["path"])))
        elif e.get("category") == "net" and isinstance(e.get("port"), int) and e.get("peer"):
            peer = str(e["peer"])
            key = f"[{peer}]:{e['port']}" if ":" in peer else f"{peer}:{e['port']}"
            connect[key].calls.append((seq, name, key))
        else:
            what = e.get("path") or e.get("peer") or e.get("detail") or ""
            unscoped.append((seq, name, str(what)))
    notes: list[str] = []
    write = _collapse(places, allow_broad, notes)
    return Suggestion(write, dict(connect), unscoped, notes)


def _collapse(
    places: dict[str, Evidence], allow_broad: bool, notes: list[str]
) -> dict[str, Evidence]:
    """Merge a tree of directories into its parent and drop directories already covered."""
    by_parent: dict[str, list[str]] = defaultdict(list)
    for d in places:
        by_parent[os.path.dirname(d)].append(d)
    merged: dict[str, Evidence] = defaultdict(Evidence)
    for d, ev in places.items():
        parent = os.path.dirname(d)
        tree = len(by_parent[parent]) >= TREE and d != "/"
        if tree and broad(parent) and not allow_broad:
            notes.append(
                f"{parent} holds {len(by_parent[parent])} written directories;"
                " not proposed wholesale (pass --broad to allow it)"
            )
            tree = False
        target = parent if tree else d
        if broad(target) and not allow_broad:
            first = ev.calls[0]
            notes.append(
                f"not proposed: {target} (a broad place; pass --broad to allow it),"
                f" needed by {len(ev.calls)} call(s), first {first[1]} {first[2]} (seq {first[0]})"
            )
            continue
        merged[target].calls.extend(ev.calls)
    keep: dict[str, Evidence] = {}
    for d in sorted(merged, key=len):
        outer = covering(tuple(keep), d)
        if outer is None:
            keep[d] = merged[d]
        else:
            keep[outer].calls.extend(merged[d].calls)
    for ev in keep.values():
        ev.calls.sort()
    return dict(sorted(keep.items()))


def to_toml(s: Suggestion, source: str) -> str:
    """The suggestion as a policy file for `bubble run --policy`, commented."""
    lines = [f"# Suggested by `bubble policy suggest` from {source}."]
    lines += [f"# note: {n}" for n in dict.fromkeys(s.notes)]
    if s.write:
        lines += ["[fs]", "write = ["]
        lines += [f"  {_quote(d)},  # {ev.comment()}" for d, ev in s.write.items()]
        lines.append("]")
    if s.connect:
        # The supervisor makes an allowed connect itself from the host's network (DESIGN §2.8).
        lines += ["[net]", "connect = ["]
        lines += [f"  {_quote(ep)},  # {ev.comment('connect')}" for ep, ev in s.connect.items()]
        lines.append("]")
    if s.unscoped:
        lines.append("# Denied calls that no scope allows (metadata, privileged or other):")
        lines += [f"#   seq {q}: {name} {what}" for q, name, what in s.unscoped[:20]]
        if len(s.unscoped) > 20:
            lines.append(f"#   … and {len(s.unscoped) - 20} more")
    if not (s.write or s.connect):
        lines.append("# Nothing a scope could allow was denied.")
    return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
