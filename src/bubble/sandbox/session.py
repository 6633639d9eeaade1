"""One run in the parent: fork the target, take its listener, supervise, report the end.

The parent is the supervisor. It makes itself non-dumpable first, so a target running as the
same user can neither ptrace it, read or write its memory, nor take its listener; and a child
subreaper, so orphaned grandchildren stay ours to supervise, reap and kill.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import signal
import sys
import time
from collections.abc import Callable

from bubble import events
from bubble.policy import Policy
from bubble.sandbox import _abi, child, keeper, landlock, netns, tree
from bubble.sandbox._libc import pidfd_getfd, pidfd_open, prctl
from bubble.sandbox.limits import Monitor, OutputPump, which_limit
from bubble.sandbox.supervisor import Supervisor

TYPE_CHECKING = False  # `typing` costs start-up time; mypy still reads this block
if TYPE_CHECKING:
    from typing import Any

    from bubble.sandbox.simnet import SimulatedInternet

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
KILL_RETRY = 0.2  # seconds between kill rounds once the tree must end


def _read_line(fd: int) -> str:
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()


class Session:
    """Runs one target under one policy; `run()` returns the exit status."""

    def __init__(
        self,
        policy: Policy,
        argv: list[str],
        events_fd: int,
        path: str,
        user: tuple[int | None, int | None, str | None],
        captures: str | None = None,
        http_body: bytes | None = None,
    ) -> None:
        self.policy = policy
        self.argv = argv
        self.path = path
        self.uid, self.gid, self.user = user
        self.writer = events.EventWriter(events_fd)
        self.child_pid = 0
        self.deadline: float | None = None
        self.timed_out = False
        self.status: int | None = None  # raw wait status of the target
        self.keeper_pid = 0
        self.keeper_rusage: Any = None
        self.keeper_status = 0
        self.target_maxrss = 0  # wait4's figure for the target, from the keeper
        self.error: tuple[int, str] | None = None  # (exit code, message) from the child
        self.limit: str | None = None  # which limit ended the run
        self.retry_kill_at: float | None = None  # set once the tree must end
        self.reaped = False  # our child is reaped: its pid may be reused
        self.monitor = Monitor(policy)
        self.pump = OutputPump(policy.max_output) if policy.max_output else None
        self.notes: list[str] = []
        self.wall = False
        self.sim: SimulatedInternet | None = None
        self.captures = captures  # where --net-sim keeps payloads (None: not kept)
        self.http_body = http_body  # what its sinkhole answers HTTP with (None: the default)

    # -- callbacks from the supervisor loop -------------------------------------------------
    def next_due(self) -> float | None:
        """When `on_timeout` must run next (monotonic seconds), or None. Called every turn of
        the supervisor loop, so it allocates nothing."""
        due = self.monitor.next
        deadline = None if self.timed_out else self.deadline
        for t in (deadline, self.retry_kill_at):
            if t is not None and (due is None or t < due):
                due = t
        return due

    def on_timeout(self) -> None:
        """Whatever is due: another kill round, the --timeout, a monitor sample."""
        now = time.monotonic()
        if self.retry_kill_at is not None and now >= self.retry_kill_at:
            self.kill_all()  # survivors of the last round: a fork bomb racing the kill
        if self.deadline is not None and not self.timed_out and now >= self.deadline:
            self.timed_out = True
            self.limit = self.limit or "timeout"
            message = f"timed out after {self.policy.timeout:g} s: killing the process tree"
            self.writer.emit(events.Msg(action="timeout", message=message))
            self.kill_all()
        due = self.monitor.next
        sample = self.monitor.sample(os.getpid()) if due is not None and now >= due else None
        if sample == "procs" and self.limit is None:
            self.end_by_limit("procs", f"--max-procs {self.policy.max_procs} reached")

    def kill_all(self) -> None:
        """SIGKILL the whole tree; again every KILL_RETRY seconds until the run ends."""
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

    def on_output(self, fd: int) -> bool:
        assert self.pump is not None
        more = self.pump.on_readable(fd)
        if self.pump.exceeded and self.limit is None:
            self.end_by_limit("output", f"--max-output {self.pump.limit} bytes reached")
        return more

    def on_child_message(self, fd: int) -> bool:
        data = os.read(fd, 4096)
        for line in data.decode(errors="replace").splitlines():
            code, _, message = line.partition(" ")
            if message.startswith("status "):
                self.status = int(message.split()[1])  # from our PID-namespace init
            elif code.isdigit():
                self.error = (int(code), message)
        return bool(data)

    def on_signal(self, fd: int) -> bool:
        try:
            signums = os.read(fd, 512)
        except BlockingIOError:
            return True
        for signum in signums:
            if signum == signal.SIGCHLD:
                self.reap()
            elif signum in _STOP_SIGNALS and not self.timed_out:
                self.writer.emit(
                    events.Msg(
                        action="stop",
                        message=f"got {signal.Signals(signum).name}: killing the process tree",
                    )
                )
                self.kill_all()
        return True

    def on_keeper(self, fd: int) -> bool:
        """The keeper's report: `status RAW MAXRSS` when it reaped the target."""
        data = os.read(fd, 4096)
        for line in data.decode(errors="replace").splitlines():
            word, *values = line.split()
            if word == "status":
                self.reaped = True  # the target's pid may be reused from now on
                self.target_maxrss = int(values[1])
                if self.status is None:  # under --pidns our init already reported the target's
                    self.status = int(values[0])
        return bool(data)

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

    # -- the run -------------------------------------------------------------------------------
    def run(self) -> int:
        policy = self.policy
        prctl(_abi.PR_SET_DUMPABLE, 0)
        # The target gets the terminal's foreground: with TOSTOP set it could otherwise stop
        # us (SIGTTOU) the moment we write an event or its output to that terminal.
        signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        prctl(_abi.PR_SET_CHILD_SUBREAPER, 1)
        # Test hook: drop rows from the filter to prove the Landlock backstop on its own.
        self.omitted = [n for n in os.environ.get("BUBBLE_TEST_OMIT_ROWS", "").split(",") if n]
        self.cgroups = None
        if policy.memory or policy.max_procs:
            from bubble.sandbox.cgroups import Cgroups  # pathlib: only when limits need it

            self.cgroups = Cgroups.create(policy, str(os.getpid()))
        fallback = None
        if self.uid is not None:
            fallback = _private_dir("/tmp", "bubble-cwd-")
            os.chown(fallback, self.uid, self.gid or 0)
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        go_r, go_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        wake_r, wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        for sig in (signal.SIGCHLD, *_STOP_SIGNALS):
            signal.signal(sig, lambda *_: None)
        # Test hook: pretend the kernel has this Landlock ABI (0: none) to exercise the
        # degraded path; the operator's environment only, like BUBBLE_TEST_OMIT_ROWS.
        forced = os.environ.get("BUBBLE_TEST_LANDLOCK_ABI")
        abi = int(forced) if forced else landlock.abi_version()
        fs, net, scope, self.notes = landlock.plan(policy, abi)
        wall, wall_notes = netns.plan(policy)
        self.notes += wall_notes
        self.wall = wall
        scoped = policy.write if landlock.enforces_scopes(policy, abi) else ()
        if policy.write and not scoped:
            # Without Landlock a scoped allow would be a CONTINUE on memory: deny them all.
            self.policy = policy = policy.replace(write=())
        plan = child.ChildPlan(
            policy=policy,
            path=self.path,
            argv=self.argv,
            bpf=b"",
            omit=frozenset(self.omitted),
            parent_pid=os.getpid(),
            uid=self.uid,
            gid=self.gid,
            fallback_cwd=fallback,
            ready_w=ready_w,
            go_r=go_r,
            err_w=err_w,
            landlock=(fs, net, scope, scoped),
            stdio=self.pump.child_fds() if self.pump else None,
            cgroup=bool(self.cgroups and "memory" in self.cgroups.dirs),
            netns=wall,
        )
        report_r, report_w = os.pipe2(os.O_CLOEXEC)
        if policy.net_sim and wall:
            from bubble.sandbox.simnet import SimulatedInternet

            self.sim = SimulatedInternet.fork(self.captures, self.http_body, self.writer)
        ours = (ready_r, go_w, err_r, wake_r, wake_w, report_r, *self._private_fds())
        started = time.monotonic()
        self.keeper_pid = keeper.start(plan, report_w, ours)
        for fd in (ready_w, go_r, err_w, report_w):
            os.close(fd)
        line = _read_line(report_r).split()
        pid = self.child_pid = int(line[1]) if line[:1] == ["pid"] else 0
        if self.cgroups and pid:
            self.cgroups.add(pid)  # before "go": the target starts inside its limits
        if not policy.pidns:  # under --pidns our child is the namespace's keeper, not the target
            self.monitor.watch(pid, self.path)
        if self.pump:
            self.pump.parent_started()
        try:
            return self._supervise(ready_r, go_w, err_r, wake_r, report_r, started)
        finally:
            self._restore_terminal()
            signal.set_wakeup_fd(-1)  # before its pipe closes: a late SIGCHLD must not hit it
            for sig in (signal.SIGCHLD, *_STOP_SIGNALS):
                signal.signal(sig, signal.SIG_DFL)
            for fd in (ready_r, go_w, err_r, wake_r, wake_w, report_r):
                os.close(fd)
            if fallback:
                with contextlib.suppress(OSError):
                    os.rmdir(fallback)
            if self.cgroups:
                self.cgroups.remove()

    def _drain_keeper(self, report_r: int) -> None:
        """The keeper has exited: what it still had to say ends in end of file."""
        with contextlib.suppress(OSError):
            while self.on_keeper(report_r):
                pass

    def _private_fds(self) -> tuple[int, ...]:
        """Descriptors of ours beyond the pipes: the event sink, the output pump's ends."""
        fds = [self.writer.fd] if self.writer.fd > 2 else []
        if self.pump:
            fds += list(self.pump.sinks)
        if self.sim:
            fds += list(self.sim.fds())
        return tuple(fds)

    def _supervise(
        self, ready_r: int, go_w: int, err_r: int, wake_r: int, report_r: int, started: float
    ) -> int:
        policy, writer = self.policy, self.writer
        ready = _read_line(ready_r).split(" ", 2)
        if len(ready) < 3:
            if self.sim is not None:
                self.sim.stop()  # never joined: it ends without a record
            self.on_child_message(err_r)
            self.reap(block=True)
            self._drain_keeper(report_r)
            return self._finish(started, None)
        listener_no, killable, cwd = int(ready[0]), ready[1] == "1", ready[2]
        pidfd = pidfd_open(self.child_pid)
        try:
            listener = pidfd_getfd(pidfd, listener_no)
        finally:
            os.close(pidfd)
        writer.emit(
            events.Spawn(
                pid=self.child_pid,
                exe=self.path,
                argv=self.argv,
                cwd=cwd,
                ppid=os.getpid(),
                action="launcher.start",
                user=self.user,
            )
        )
        notes = list(self.notes)
        try:
            fcntl.ioctl(listener, _abi.IOCTL_NOTIF_SET_FLAGS, _abi.USER_NOTIF_FD_SYNC_WAKE_UP)
        except OSError:
            notes.append("SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP unavailable (kernel < 6.6)")
        if not killable:
            notes.append(
                "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV unavailable (kernel < 5.19): "
                "a signal during a check restarts the call"
            )
        if self.omitted:
            notes.append(
                f"test hook BUBBLE_TEST_OMIT_ROWS: not mediated: {', '.join(self.omitted)}"
            )
        for note in notes:
            writer.emit(events.Msg(action="degraded", message=note))
        if policy.diagnose:
            writer.emit(events.Msg(action="diagnose", message=_diagnose_note()))
        if policy.timeout:
            self.deadline = time.monotonic() + policy.timeout
        exempt = frozenset({self.child_pid}) if policy.pidns else frozenset()
        sup = Supervisor(listener, policy, writer, exempt)
        watch: dict[int, Callable[[], bool]] = {
            err_r: functools.partial(self.on_child_message, err_r),
            wake_r: functools.partial(self.on_signal, wake_r),
            report_r: functools.partial(self.on_keeper, report_r),
        }
        for fd in self.pump.sinks if self.pump else ():
            watch[fd] = functools.partial(self.on_output, fd)
        if policy.net_sim:
            self._start_simulated_internet(watch)
        os.write(go_w, b"G")
        try:
            sup.serve(watch, self.next_due, self.on_timeout)
        except Exception as err:  # noqa: BLE001 - whatever broke, the tree must not run on
            self.error = (125, f"the supervisor failed: {err!r}")
            self.kill_all()
        finally:
            os.close(listener)
        if self.sim is not None:
            self.sim.stop()  # the target's tree is gone: what it left open is recorded now
        self.reap(block=True)
        self.on_child_message_nonblocking(err_r)
        self._drain_keeper(report_r)
        self._drain_output()
        return self._finish(started, sup)

    def _start_simulated_internet(self, watch: dict[int, Callable[[], bool]]) -> None:
        """--net-sim: the DNS server and the sinkhole join the wall, before "go"."""
        why = self.sim.join(self.child_pid) if self.sim else "there is no network wall for it"
        if why is not None:
            self.sim = None
            message = f"--net-sim is off: {why}; the network is denied as without it"
            self.writer.emit(events.Msg(action="degraded", message=message))
            return
        assert self.sim is not None
        watch[self.sim.fd] = self.sim.on_records

    def _drain_output(self) -> None:
        """Every process is gone: what is left in the output pipes ends in EOF."""
        if self.pump is None:
            return
        for fd in list(self.pump.sinks):
            with contextlib.suppress(OSError):
                while self.on_output(fd):
                    pass

    def on_child_message_nonblocking(self, fd: int) -> None:
        os.set_blocking(fd, False)
        with contextlib.suppress(BlockingIOError):
            self.on_child_message(fd)

    def _finish(self, started: float, sup: Supervisor | None) -> int:
        duration_ms = int((time.monotonic() - started) * 1000)
        status = self.status if self.status is not None else self.keeper_status
        code: int | None = None
        sig: int | None = None
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            result = 128 + sig
        else:
            code = result = os.WEXITSTATUS(status)
        # Peak memory as seen at exit_group and by sampling; wait4's figure only as a last
        # resort, since it also holds the launcher's memory from before exec.
        seen = max(sup.max_rss_kb if sup else 0, self.monitor.rss_kb)
        rss = seen or self.target_maxrss
        if self.error is not None and self.error[0] != 0:
            result = code = self.error[0]
            self.writer.emit(events.Msg(action="error", message=self.error[1], pid=self.child_pid))
            sys.stderr.write(f"bubble: {self.error[1]}\n")
        r = self.keeper_rusage
        cpu_used = (r.ru_utime + r.ru_stime) if r else 0.0
        limit = self.limit or which_limit(
            self.policy, sig, cpu_used, self.cgroups, self.monitor, sup.max_vm_kb if sup else 0
        )
        notes = f"exit={code}" if sig is None else f"signal={sig}"
        if self.pump and self.pump.dropped:
            notes += f" output_kept={self.pump.kept} output_dropped={self.pump.dropped}"
        if limit:
            notes += f" limit={limit}"
        self.writer.emit(
            events.Exit(
                pid=self.child_pid,
                exit_code=code,
                signal=sig,
                duration_ms=duration_ms,
                max_rss_kb=rss,
                timed_out=self.timed_out,
                limit=limit,
                notes=f"{notes} max_rss_kb={rss}",
            )
        )
        self.writer.flush()
        return result

    def _restore_terminal(self) -> None:
        with contextlib.suppress(OSError):
            if os.isatty(0) and os.tcgetpgrp(0) != os.getpgrp():
                old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
                os.tcsetpgrp(0, os.getpgrp())
                signal.signal(signal.SIGTTOU, old)


def _private_dir(parent: str, prefix: str) -> str:
    """A new 0700 directory (tempfile.mkdtemp without importing `tempfile`, which pulls in
    `random`: start-up time). mkdir fails on an existing name, so a guess cannot hijack it."""
    for _ in range(100):
        path = f"{parent}/{prefix}{os.urandom(6).hex()}"
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"no free name for {parent}/{prefix}*")


def _diagnose_note() -> str:
    try:
        with open("/proc/sys/kernel/seccomp/actions_logged") as fh:
            logged = fh.read().strip()
    except OSError:
        logged = "unknown"
    return (
        "SECCOMP_FILTER_FLAG_LOG set: the kernel logs this filter's non-allow decisions to the "
        f"audit log (dmesg / journalctl -k / audit.log); actions logged here: {logged}. "
        "USER_NOTIF decisions are recorded by bubble's own events."
    )
