"""One run in the parent: fork the target, take its listener, supervise, report the end.

The rooms: `wire` (what the child and the keeper tell us), `control` (the run's state and the
loop's callbacks), `outcome` (exit accounting), `supervisor` (the notification loop); this
module only wires them together.

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
from bubble.sandbox import _abi, child, keeper, landlock, lifecycle, netns, wire
from bubble.sandbox._libc import pidfd_getfd, pidfd_open, prctl
from bubble.sandbox.control import STOP_SIGNALS, Control
from bubble.sandbox.eventlog import EventWriter
from bubble.sandbox.limits import which_limit
from bubble.sandbox.outcome import account, peak_rss
from bubble.sandbox.supervisor import Supervisor

TYPE_CHECKING = False  # `typing` costs start-up time; mypy still reads this block
if TYPE_CHECKING:
    from bubble.sandbox.layerplan import Layout


class Session:
    """Runs one target under one policy; `run()` returns the exit status."""

    def __init__(
        self,
        policy: Policy,
        argv: list[str],
        events_fd: int,
        path: str,
        user: tuple[int | None, int | None, str | None],
        sink: tuple[bool | None, int | None] = (None, None),
        captures: str | None = None,
        http_body: bytes | None = None,
    ) -> None:
        self.policy = policy
        self.argv = argv
        self.path = path
        self.uid, self.gid, self.user = user
        self.writer = EventWriter(events_fd, text=sink[0], tee=sink[1])
        self.ctl = Control(policy, self.writer)
        self.notes: list[str] = []
        self.lifecycle: lifecycle.Lifecycle | None = None
        self.layer_fd = -1  # --fs-overlay: the layer's tmpfs, taken from the child
        self.captures = captures  # where --net-sim keeps payloads (None: not kept)
        self.http_body = http_body  # what its sinkhole answers HTTP with (None: the default)

    def run(self) -> int:
        policy, ctl = self.policy, self.ctl
        prctl(_abi.PR_SET_DUMPABLE, 0)
        # The target gets the terminal's foreground: with TOSTOP set it could otherwise stop
        # us (SIGTTOU) the moment we write an event or its output to that terminal.
        signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        prctl(_abi.PR_SET_CHILD_SUBREAPER, 1)
        # Test hook: drop rows from the filter to prove the Landlock backstop on its own.
        self.omitted = [n for n in os.environ.get("BUBBLE_TEST_OMIT_ROWS", "").split(",") if n]
        if policy.memory or policy.max_procs:
            from bubble.sandbox.cgroups import Cgroups  # pathlib: only when limits need it

            ctl.cgroups = Cgroups.create(policy, str(os.getpid()))
        fallback = None
        if self.uid is not None:
            fallback = _private_dir("/tmp", "bubble-cwd-")
            os.chown(fallback, self.uid, self.gid or 0)
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        go_r, go_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        report_r, report_w = os.pipe2(os.O_CLOEXEC)
        wake_r, wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        for sig in (signal.SIGCHLD, *STOP_SIGNALS):
            signal.signal(sig, lambda *_: None)
        plan = self._plan(fallback, ready_w, go_r, err_w)
        self.lifecycle = _open_lifecycle(self.writer, self.notes)
        if policy.net_sim and plan.netns:
            from bubble.sandbox.simnet import SimulatedInternet

            ctl.sim = SimulatedInternet.fork(self.captures, self.http_body, self.writer)
        ours = (ready_r, go_w, err_r, wake_r, wake_w, report_r, *self._private_fds())
        if self.lifecycle:
            ours += (self.lifecycle.fileno(),)
        started = time.monotonic()
        ctl.keeper_pid = keeper.start(plan, report_w, ours)
        for fd in (ready_w, go_r, err_w, report_w, *_given(plan.netns_fd)):
            os.close(fd)
        report = wire.Reader(report_r)
        forked = report.read_one()
        pid = ctl.child_pid = forked.pid if isinstance(forked, wire.Forked) else 0
        if self.lifecycle:
            self.lifecycle.start(ctl.keeper_pid, frozenset({pid}))
        if ctl.cgroups and pid:
            ctl.cgroups.add(pid)  # before "go": the target starts inside its limits
        if not policy.pidns:  # under --pidns our child is the namespace's keeper, not the target
            ctl.monitor.watch(pid, self.path)
        if ctl.pump:
            ctl.pump.parent_started()
        try:
            return self._supervise(ready_r, go_w, wire.Reader(err_r), wake_r, report, started)
        finally:
            _restore_terminal()
            signal.set_wakeup_fd(-1)  # before its pipe closes: a late SIGCHLD must not hit it
            for sig in (signal.SIGCHLD, *STOP_SIGNALS):
                signal.signal(sig, signal.SIG_DFL)
            for fd in (ready_r, go_w, err_r, wake_r, wake_w, report_r):
                os.close(fd)
            if fallback:
                with contextlib.suppress(OSError):
                    os.rmdir(fallback)
            if ctl.cgroups:
                ctl.cgroups.remove()
            if self.lifecycle:
                self.lifecycle.sock.close()

    def _plan(self, fallback: str | None, ready_w: int, go_r: int, err_w: int) -> child.ChildPlan:
        policy = self.policy
        # Test hook: pretend the kernel has this Landlock ABI (0: none) to exercise the
        # degraded path; the operator's environment only, like BUBBLE_TEST_OMIT_ROWS.
        forced = os.environ.get("BUBBLE_TEST_LANDLOCK_ABI")
        abi = int(forced) if forced else landlock.abi_version()
        fs, net, scope, self.notes = landlock.plan(policy, abi)
        wall, wall_notes = netns.plan(policy)
        spare = netns.take_spare()  # the fork server's, made ahead; ours to close after
        if spare >= 0 and not wall:
            os.close(spare)
            spare = -1
        self.notes += wall_notes
        scoped = policy.write if landlock.enforces_scopes(policy, abi) else ()
        if policy.write and not scoped:
            # Without Landlock a scoped allow would be a CONTINUE on memory: deny them all.
            self.policy = policy = policy.replace(write=())
        self.layout: Layout | None = None
        if policy.fs_overlay is not None:
            from bubble.sandbox import layerplan

            self.layout = layerplan.plan(policy.max_layer)
            # Landlock grants writes back beneath "/" -- opened by the child after pivot_root,
            # so the layer's root and nothing of the host's.
            scoped = ("/",)
        return child.ChildPlan(
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
            stdio=self.ctl.pump.child_fds() if self.ctl.pump else None,
            cgroup=bool(self.ctl.cgroups and "memory" in self.ctl.cgroups.dirs),
            layer=self.layout,
            netns=wall,
            netns_fd=spare,
        )

    def _private_fds(self) -> tuple[int, ...]:
        """Descriptors of ours beyond the pipes: the event sink, the output pump's ends."""
        fds = [self.writer.fd] if self.writer.fd > 2 else []
        if self.ctl.pump:
            fds += list(self.ctl.pump.sinks)
        if self.ctl.sim:
            fds += list(self.ctl.sim.fds())
        return tuple(fds)

    def _supervise(
        self,
        ready_r: int,
        go_w: int,
        err: wire.Reader,
        wake_r: int,
        report: wire.Reader,
        started: float,
    ) -> int:
        ctl = self.ctl
        ready = wire.Reader(ready_r).read_one()
        if not isinstance(ready, wire.Ready):
            if ctl.sim is not None:
                ctl.sim.stop()  # never joined: it ends without a record
            ctl.drain(err)
            ctl.reap(block=True)
            ctl.drain(report)
            return self._finish(started, None)
        pidfd = pidfd_open(ctl.child_pid)
        try:
            listener = pidfd_getfd(pidfd, ready.listener)
            if ready.layer >= 0:
                self.layer_fd = pidfd_getfd(pidfd, ready.layer)
        finally:
            os.close(pidfd)
        exe, exe_hex = events.exact(self.path)
        argv, argv_hex = events.exact_list(self.argv)
        cwd, cwd_hex = events.exact(ready.cwd)
        self.writer.emit(
            events.Spawn(
                pid=ctl.child_pid,
                exe=exe,
                argv=argv,
                cwd=cwd,
                exe_hex=exe_hex,
                argv_hex=argv_hex,
                cwd_hex=cwd_hex,
                ppid=os.getpid(),
                action="launcher.start",
                user=self.user,
            )
        )
        self._degraded(listener, ready.killable)
        if self.policy.timeout:
            ctl.deadline = time.monotonic() + self.policy.timeout
        exempt = frozenset({ctl.child_pid}) if self.policy.pidns else frozenset()
        sup = Supervisor(listener, self.policy, self.writer, exempt)
        watch: dict[int, Callable[[], bool]] = {
            err.fd: functools.partial(ctl.on_wire, err),
            wake_r: functools.partial(ctl.on_signal, wake_r),
            report.fd: functools.partial(ctl.on_wire, report),
        }
        for fd in ctl.pump.sinks if ctl.pump else ():
            watch[fd] = functools.partial(ctl.on_output, fd)
        if self.lifecycle:
            watch[self.lifecycle.fileno()] = self.lifecycle.on_readable
        if self.policy.net_sim:
            self._start_simulated_internet(watch)
        os.write(go_w, b"G")
        try:
            sup.serve(watch, ctl.next_due, ctl.on_due)
        except Exception as error:  # noqa: BLE001 - whatever broke, the tree must not run on
            ctl.error = (125, f"the supervisor failed: {error!r}")
            ctl.kill_all()
        finally:
            os.close(listener)
        if ctl.sim is not None:
            ctl.sim.stop()  # the target's tree is gone: what it left open is recorded now
        ctl.reap(block=True)
        ctl.drain(err)
        ctl.drain(report)
        ctl.drain_output()
        if self.lifecycle:
            self.lifecycle.finish()  # every process.end before the root's process.exit
        if self.layer_fd >= 0:
            # A copy: a loop thread abandoned by the stall guard may still add to it.
            self._report_layer(dict(sup.renames) if sup.renames is not None else None)
        return self._finish(started, sup)

    def _start_simulated_internet(self, watch: dict[int, Callable[[], bool]]) -> None:
        """--net-sim: the DNS server and the sinkhole join the wall, before "go"."""
        ctl = self.ctl
        why = ctl.sim.join(ctl.child_pid) if ctl.sim else "there is no network wall for it"
        if why is not None:
            ctl.sim = None
            message = f"--net-sim is off: {why}; the network is denied as without it"
            self.writer.emit(events.Msg(action="degraded", message=message))
            return
        assert ctl.sim is not None
        watch[ctl.sim.fd] = ctl.sim.on_records

    def _report_layer(self, renames: dict[str, str] | None) -> None:
        """Every process is gone: read what the run changed in its layer, then let it go."""
        from bubble.sandbox import drops

        assert self.layout is not None
        try:
            limit = drops.report(
                self.writer, self.layer_fd, self.layout, self.policy, self.ctl.child_pid, renames
            )
            self.ctl.limit = self.ctl.limit or limit
        except OSError as err:
            message = f"reading the layer failed: {err}"
            self.writer.emit(events.Msg(action="error", message=message, pid=self.ctl.child_pid))
        finally:
            os.close(self.layer_fd)
            self.layer_fd = -1

    def _degraded(self, listener: int, killable: bool) -> None:
        """One `sandbox.msg` per missing kernel feature or active test hook."""
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
            self.writer.emit(events.Msg(action="degraded", message=note))
        if self.policy.diagnose:
            self.writer.emit(events.Msg(action="diagnose", message=_diagnose_note()))

    def _finish(self, started: float, sup: Supervisor | None) -> int:
        ctl = self.ctl
        duration_ms = int((time.monotonic() - started) * 1000)
        status = ctl.status if ctl.status is not None else ctl.keeper_status
        seen = max(sup.max_rss_kb if sup else 0, ctl.monitor.rss_kb)
        r = ctl.keeper_rusage
        cpu_used = (r.ru_utime + r.ru_stime) if r else 0.0
        signalled = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        limit = ctl.limit or which_limit(
            self.policy, signalled, cpu_used, ctl.cgroups, ctl.monitor, sup.max_vm_kb if sup else 0
        )
        pump = ctl.pump
        end = account(
            status,
            ctl.error,
            limit,
            peak_rss(seen, ctl.target_maxrss),
            (pump.kept, pump.dropped) if pump else None,
        )
        if ctl.error is not None and ctl.error[0] != 0:
            self.writer.emit(events.Msg(action="error", message=ctl.error[1], pid=ctl.child_pid))
            sys.stderr.write(f"bubble: {ctl.error[1]}\n")
        self.writer.emit(
            events.Exit(
                pid=ctl.child_pid,
                exit_code=end.exit_code,
                signal=end.signal,
                duration_ms=duration_ms,
                max_rss_kb=end.max_rss_kb,
                timed_out=ctl.timed_out,
                limit=limit,
                notes=end.notes,
            )
        )
        self.writer.close()
        return end.result


def _given(fd: int) -> tuple[int, ...]:
    return (fd,) if fd >= 0 else ()


def _restore_terminal() -> None:
    with contextlib.suppress(OSError):
        if os.isatty(0) and os.tcgetpgrp(0) != os.getpgrp():
            old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
            os.tcsetpgrp(0, os.getpgrp())
            signal.signal(signal.SIGTTOU, old)


def _open_lifecycle(writer: EventWriter, notes: list[str]) -> lifecycle.Lifecycle | None:
    """The process-events listener, or None with a note saying why there is none."""
    sock, why = lifecycle.open_listener()
    if sock is None:
        notes.append(why or "process.end events unavailable")
        return None
    return lifecycle.Lifecycle(sock, writer)


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
