"""The target's process tree: find every descendant and end them all.

The launcher is a child subreaper, so orphans are re-parented to it and stay findable.
"""

from __future__ import annotations

import os
import signal


def children_map() -> dict[int, list[int]]:
    """ppid -> [pid] for every process visible in /proc."""
    tree: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue  # gone meanwhile
        # comm may contain spaces and parentheses: the fields start after the last ')'.
        fields = stat[stat.rfind(b")") + 2 :].split()
        tree.setdefault(int(fields[1]), []).append(int(name))
    return tree


def descendants(root: int) -> list[int]:
    tree = children_map()
    out: list[int] = []
    todo = list(tree.get(root, ()))
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(tree.get(pid, ()))
    return out


def kill_tree(
    root: int, pgid: int | None = None, spare: tuple[int, ...] = (), rounds: int = 200
) -> int:
    """SIGKILL every descendant of `root` (and process group `pgid`) until none is left;
    `spare` (our keeper, the simulated internet) are left alive, their descendants are not.

    Returns how many signals were sent. Repeats because a fork bomb keeps forking while we
    scan; SIGKILL'd processes cannot fork, so each round shrinks what is left.
    """
    sent = 0
    for _ in range(rounds):
        if pgid is not None:
            try:
                os.killpg(pgid, signal.SIGKILL)
                sent += 1
            except OSError:
                pass  # group already empty
        alive = [p for p in descendants(root) if p not in spare and not _is_zombie(p)]
        if not alive:
            return sent
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
                sent += 1
            except OSError:
                pass  # exited meanwhile
    return sent


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return True
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] in (b"Z", b"X")
