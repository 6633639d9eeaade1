"""Resource limits that need the supervisor's help: output bytes, process count, memory.

rlimits (set in the child) do the hard enforcing: RLIMIT_AS, RLIMIT_CPU, RLIMIT_NPROC. What
they cannot do is *end* a run or say *which* limit ended it: a fork bomb keeps retrying fork,
a flood keeps writing. `Monitor` samples the tree to catch those; `OutputPump` sits between the
target's stdout/stderr and ours to count bytes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

from bubble.policy import Policy
from bubble.sandbox import tree
from bubble.sandbox.procmem import status_kb

TYPE_CHECKING = False  # `typing` costs start-up time; mypy still reads this block
if TYPE_CHECKING:
    from bubble.sandbox.cgroups import Cgroups

TICK = 0.05  # seconds between samples when --memory or --max-procs is set
RSS_TICK = 0.1  # otherwise: only the target's peak memory, for a target killed by a signal
MEMORY_REACHED = 0.9  # a peak above this share of --memory means the limit was hit


class OutputPump:
    """Copies the target's stdout and stderr to ours until `limit` bytes in total, then
    counts and drops the rest (the session ends the run)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.kept = 0
        self.dropped = 0
        self.exceeded = False
        out_r, self.out_w = os.pipe2(os.O_CLOEXEC)
        err_r, self.err_w = os.pipe2(os.O_CLOEXEC)
        self.sinks = {out_r: 1, err_r: 2}

    def child_fds(self) -> tuple[int, int]:
        """Write ends for the child's stdout/stderr."""
        return self.out_w, self.err_w

    def parent_started(self) -> None:
        os.close(self.out_w)
        os.close(self.err_w)

    def on_readable(self, fd: int) -> bool:
        """Move what is there. False at end of file."""
        data = os.read(fd, 1 << 16)
        if not data:
            os.close(fd)
            return False
        room = max(0, self.limit - self.kept)
        keep, drop = data[:room], data[room:]
        if keep:
            view = memoryview(keep)
            try:
                while view:
                    view = view[os.write(self.sinks[fd], view) :]
            except OSError:
                # Our own stdout is gone (a closed pipe, a terminal the target took over):
                # count the rest as dropped and keep draining, so the target never blocks.
                drop, keep = bytes(view) + drop, keep[: len(keep) - len(view)]
            self.kept += len(keep)
        if drop:
            self.dropped += len(drop)
            self.exceeded = True
        return True


class Monitor:
    """Samples the process tree: ends a run that reached --max-procs, and remembers the
    largest address space seen, to tell whether --memory was reached."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.tick = TICK if policy.memory or policy.max_procs else RSS_TICK
        self.next: float | None = None
        self.peak_vm_kb = 0
        self.rss_kb = 0  # the target's VmHWM as last seen
        self._target: tuple[int, str] | None = None

    def watch(self, pid: int, exe: str) -> None:
        """Start sampling; `pid`'s peak memory counts once it runs `exe` (not before exec,
        when it is still a copy of the launcher)."""
        self._target = (pid, os.path.realpath(exe))
        self.next = time.monotonic() + self.tick

    def sample(self, root: int) -> str | None:
        """One sample; returns "procs" when the tree must end."""
        self.next = time.monotonic() + self.tick
        if self._target:
            pid, exe = self._target
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/exe") == exe:
                    self.rss_kb = max(self.rss_kb, status_kb(pid, "VmHWM") or 0)
        if not (self.policy.memory or self.policy.max_procs):
            return None
        pids = tree.descendants(root)
        if self.policy.memory:
            for pid in pids:
                with contextlib.suppress(ValueError):
                    self.peak_vm_kb = max(self.peak_vm_kb, status_kb(pid, "VmPeak") or 0)
        if self.policy.max_procs and len(pids) >= self.policy.max_procs:
            return "procs"
        return None

    def memory_reached(self, exit_peak_kb: int) -> bool:
        if not self.policy.memory:
            return False
        peak = max(self.peak_vm_kb, exit_peak_kb) * 1024
        return peak >= self.policy.memory * MEMORY_REACHED


def which_limit(
    policy: Policy,
    sig: int | None,
    cpu_used: float,
    cgroups: Cgroups | None,
    monitor: Monitor,
    exit_peak_vm_kb: int,
) -> str | None:
    """The limit that ended a run no limit was *seen* to end (the kernel enforced it):
    cpu (SIGXCPU, or SIGKILL at the hard limit), memory (an OOM kill in our cgroup, or a peak
    near the rlimit), procs (forks refused by our pids cgroup)."""
    hard_cpu_kill = sig == signal.SIGKILL and cpu_used >= (policy.cpu or 0)
    if policy.cpu and (sig == signal.SIGXCPU or hard_cpu_kill):
        return "cpu"
    if (cgroups and cgroups.memory_hit()) or monitor.memory_reached(exit_peak_vm_kb):
        return "memory"
    if cgroups and cgroups.procs_hit():
        return "procs"
    return None
