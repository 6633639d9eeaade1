"""cgroup limits for --memory and --max-procs, when we may create cgroups (root).

A cgroup memory limit counts resident memory of the whole tree and tells us afterwards that it
was hit (an OOM kill); a pids limit stops a fork bomb in the kernel and counts refused forks.
Both v1 (this machine's hybrid layout) and v2 hierarchies are handled. Without a writable
hierarchy the rlimits in the child remain the only enforcement (and `Monitor` the evidence).
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from bubble.policy import Policy

ROOT = Path("/sys/fs/cgroup")


def _own_path(controller: str) -> str | None:
    """Our cgroup path in `controller`'s v1 hierarchy ('' key for v2)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path
    return None


def _write(path: Path, text: str) -> None:
    path.write_text(text)


class Cgroups:
    """The run's cgroups (one per v1 controller, or one v2 group)."""

    def __init__(self, dirs: dict[str, Path], v2: bool) -> None:
        self.dirs = dirs  # "memory"/"pids" -> directory
        self.v2 = v2

    @classmethod
    def create(cls, policy: Policy, tag: str) -> Cgroups | None:
        """Cgroups enforcing `policy`'s memory/procs limits, or None where not possible."""
        wanted = {"memory": policy.memory, "pids": policy.max_procs}
        wanted = {k: v for k, v in wanted.items() if v}
        if not wanted or os.geteuid() != 0:
            return None
        dirs: dict[str, Path] = {}
        v2 = not (ROOT / "memory").is_dir() and (ROOT / "cgroup.controllers").exists()
        try:
            for controller, value in wanted.items():
                if v2:
                    base = ROOT / (_own_path("") or "/").lstrip("/")
                else:
                    base = ROOT / controller / (_own_path(controller) or "/").lstrip("/")
                path = base / f"bubble-{tag}"
                path.mkdir(exist_ok=True)
                dirs[controller] = path
                if controller == "memory":
                    _write(path / ("memory.max" if v2 else "memory.limit_in_bytes"), str(value))
                    if not v2:
                        with contextlib.suppress(OSError):  # no swap accounting: fine
                            _write(path / "memory.memsw.limit_in_bytes", str(value))
                    else:
                        with contextlib.suppress(OSError):
                            _write(path / "memory.swap.max", "0")
                else:
                    _write(path / "pids.max", str(value))
        except OSError:
            cls(dirs, v2).remove()
            return None
        return cls(dirs, v2)

    def add(self, pid: int) -> None:
        for path in {p for p in self.dirs.values()}:
            _write(path / "cgroup.procs", str(pid))

    def _events(self, controller: str, name: str) -> dict[str, int]:
        path = self.dirs.get(controller)
        if path is None:
            return {}
        try:
            lines = (path / name).read_text().splitlines()
        except OSError:
            return {}
        out = {}
        for line in lines:
            key, _, value = line.partition(" ")
            with contextlib.suppress(ValueError):
                out[key] = int(value)
        return out

    def memory_hit(self) -> bool:
        if self.v2:
            return self._events("memory", "memory.events").get("oom_kill", 0) > 0
        return self._events("memory", "memory.oom_control").get("oom_kill", 0) > 0

    def procs_hit(self) -> bool:
        return self._events("pids", "pids.events").get("max", 0) > 0

    def kill(self) -> None:
        """SIGKILL every process in the groups: membership is inherited and the target cannot
        leave, whatever session, process group or state its processes are in."""
        for path in self.dirs.values():
            if (path / "cgroup.kill").exists():
                with contextlib.suppress(OSError):
                    _write(path / "cgroup.kill", "1")
                continue
            with contextlib.suppress(OSError):
                for pid in (path / "cgroup.procs").read_text().split():
                    with contextlib.suppress(OSError):
                        os.kill(int(pid), signal.SIGKILL)

    def remove(self) -> None:
        """Delete the groups (all processes are gone by now)."""
        for path in self.dirs.values():
            with contextlib.suppress(OSError):
                path.rmdir()
