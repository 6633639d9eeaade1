"""The run's state while the supervisor loop serves it: what is due (timeout, kill rounds,
samples), what the child, the keeper and signals tell us, and ending the tree.

Every method here is a callback of the supervisor loop (`Supervisor.serve`); none blocks.
"""

from __future__ import annotations

import os
import signal
import time

from bubble import events
from bubble.policy import Policy
from bubble.sandbox import tree, wire
from bubble.sandbox.eventlog import EventWriter
from bubble.sandbox.limits import Monitor, OutputPump

TYPE_CHECKING = False  # `typing` costs start-up time; mypy still reads this block
if TYPE_CHECKING:
    from typing import Any

    from bubble.sandbox.simnet import SimulatedInternet

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
KILL_RETRY = 0.2  # seconds between kill rounds once the tree must end


class Control:
    """What one run knows about itself between start and end."""

    def __init__(self, policy: Policy, writer: EventWriter) -> None:
        self.policy = policy
        self.writer = writer
        self.child_pid = 0
        self.keeper_pid = 0
        self.deadline: float | None = None
        self.timed_out = False
        self.status: int | None = None  # raw wait status of the target
        self.keeper_rusage: Any = None
        self.keeper_status = 0
        self.target_maxrss = 0  # wait4's figure for the target, from the keeper
        self.error: tuple[int, str] | None = None  # (exit code, message) from the child
        self.limit: str | None = None  # which limit ended the run
        self.retry_kill_at: float | None = None  # set once the tree must end
        self.reaped = False  # our child is reaped: its pid may be reused
        self.monitor = Monitor(policy)
        self.pump = OutputPump(policy.max_output) if policy.max_output else None
        self.cgroups: Any = None
        self.sim: SimulatedInternet | None = None  # --net-sim's server, once forked

    # -- what is due ---------------------------------------------------------------------------
    def next_due(self) -> float | None:
        """When `on_due` must run next (monotonic seconds), or None. Called every turn of the
        supervisor loop, so it allocates nothing."""
        due = self.monitor.next
        deadline = None if self.timed_out else self.deadline
        for t in (deadline, self.retry_kill_at, self.writer.retry_at):
            if t is not None and (due is None or t < due):
                due = t
        return due

    def on_due(self) -> None:
        """Whatever is due: another kill round, the --timeout, a monitor sample, another try
        at writing events."""
        now = time.monotonic()
        retry = self.writer.retry_at
        if retry is not None and now >= retry:
            self.writer.flush()
        if self.retry_kill_at is not None and now >= self.retry_kill_at:
            self.kill_all()  # survivors of the last round: a fork bomb racing the kill
        if self.deadline is not None and not self.timed_out and now >= self.deadline:
            self.time_out()
        due = self.monitor.next
        sample = self.monitor.sample(os.getpid()) if due is not None and now >= due else None
        if sample == "procs" and self.limit is None:
            self.end_by_limit("procs", f"--max-procs {self.policy.max_procs} reached")

    def time_out(self) -> None:
        """The --timeout ran out (on our clock or the keeper's, whichever saw it first)."""
        if self.timed_out:
            return
        self.timed_out = True
        self.limit = self.limit or "timeout"
        message = f"timed out after {self.policy.timeout:g} s: killing the process tree"
        self.writer.emit(events.Msg(action="timeout", message=message))
        self.kill_all()

    def kill_all(self) -> None:
        """SIGKILL the whole tree; again every KILL_RETRY seconds until the run ends."""
        if self.cgroups is not None:
            self.cgroups.kill()
        # The child's pid doubles as its process group; once reaped, the number may be reused.
        # The simulated internet is spared: it is stopped after the tree, so that what the
        # target left open is still recorded.
        spare = (self.keeper_pid, self.sim.pid) if self.sim else (self.keeper_pid,)
        tree.kill_tree(os.getpid(), None if self.reaped else self.child_pid, spare=spare)
        self.retry_kill_at = time.monotonic() + KILL_RETRY

    def end_by_limit(self, limit: str, why: str) -> None:
        self.limit = limit
        self.writer.emit(events.Msg(action="limit", message=f"{why}: killing the process tree"))
        self.kill_all()

    # -- what arrives --------------------------------------------------------------------------
    def on_output(self, fd: int) -> bool:
        assert self.pump is not None
        more = self.pump.on_readable(fd)
        if self.pump.exceeded and self.limit is None:
            self.end_by_limit("output", f"--max-output {self.pump.limit} bytes reached")
        return more

    def on_wire(self, reader: wire.Reader) -> bool:
        """Messages from the child, our PID-namespace init or the keeper; False at EOF."""
        for msg in reader.read():
            if isinstance(msg, wire.Failed):
                self.error = (msg.code, msg.message)
            elif isinstance(msg, wire.InitStatus):
                self.status = msg.status
            elif isinstance(msg, wire.Reaped):
                self.reaped = True  # the target's pid may be reused from now on
                self.target_maxrss = msg.maxrss
                if self.status is None:  # under --pidns our init already reported the target's
                    self.status = msg.status
            elif isinstance(msg, wire.TimedOut):
                self.time_out()
        return not reader.eof

    def drain(self, reader: wire.Reader) -> None:
        """The writer has exited (or will send nothing more we wait for): read to the end."""
        os.set_blocking(reader.fd, False)
        try:
            while self.on_wire(reader):
                pass
        except (BlockingIOError, OSError):
            pass

    def on_signal(self, fd: int) -> bool:
        try:
            signums = os.read(fd, 512)
        except BlockingIOError:
            return True
        for signum in signums:
            if signum == signal.SIGCHLD:
                self.reap()
            elif signum in STOP_SIGNALS and not self.timed_out:
                name = signal.Signals(signum).name
                self.writer.emit(
                    events.Msg(action="stop", message=f"got {name}: killing the process tree")
                )
                self.kill_all()
        return True

    def reap(self, block: bool = False) -> None:
        """Collect exited children: the keeper, and orphans that came to us because the keeper
        died (we are a subreaper too); with `block`, wait for the keeper first."""
        if block and self.keeper_rusage is None:
            self._reaped_keeper(*os.wait4(self.keeper_pid, 0)[1:])
        while True:
            try:
                pid, status, rusage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.keeper_pid:
                self._reaped_keeper(status, rusage)
            elif self.sim is not None and pid == self.sim.pid:
                self.sim.reaped = True  # died early: its pid may be reused

    def _reaped_keeper(self, status: int, rusage: Any) -> None:
        self.keeper_rusage = rusage  # includes the target's (the keeper reaped it)
        self.keeper_status = status  # the target's only if the keeper died before reporting

    def drain_output(self) -> None:
        """Every process is gone: what is left in the output pipes ends in EOF."""
        if self.pump is None:
            return
        for fd in list(self.pump.sinks):
            try:
                while self.on_output(fd):
                    pass
            except OSError:
                pass
