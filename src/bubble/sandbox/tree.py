"""The target's process tree: find every descendant and end them all.

The launcher and the keeper are child subreapers, so orphans are re-parented to them and stay
findable by parent links, whatever session or process group they moved to.
"""

from __future__ import annotations

import os
import signal


def _state(stat: bytes) -> bytes:
    # comm may contain spaces and parentheses: the fields start after the last ')'.
    end = stat.rfind(b")")
    return stat[end + 2 : end + 3]


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


def alive(pid: int) -> bool:
    """Whether any thread of process `pid` still runs. The leader's own state is not enough:
    a leader that ended with SYS_exit shows `Z` while its other threads run on (KERNEL-NOTES
    trap 17), so every task is looked at."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/stat", "rb") as fh:
                if _state(fh.read()) not in (b"Z", b"X"):
                    return True
        except OSError:
            continue  # that thread is gone
    return False


def kill_tree(
    root: int, pgid: int | None = None, spare: tuple[int, ...] = (), rounds: int = 200
) -> int:
    """SIGKILL every descendant of `root` (and process group `pgid`) until none is left
    alive; `spare` (our keeper, the simulated internet) are left alive, their descendants
    are not.

    Returns how many signals were sent. Every descendant is signalled whatever its state (a
    SIGKILL to a real zombie is harmless; to a `Z` leader with live threads it ends them all).
    Repeats because a fork bomb keeps forking while we scan; SIGKILL'd processes cannot
    fork, so each round shrinks what is left.
    """
    sent = 0
    for _ in range(rounds):
        if pgid is not None:
            try:
                os.killpg(pgid, signal.SIGKILL)
                sent += 1
            except OSError:
                pass  # group already empty
        found = [p for p in descendants(root) if p not in spare]
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
                sent += 1
            except OSError:
                pass  # exited meanwhile
        if not any(alive(p) for p in found):
            return sent
    return sent
