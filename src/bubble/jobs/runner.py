"""One run: start the launcher, pump its events and output, enforce the watchdog, collect.

The executor never forks a target: it starts `python -m bubble run --events-fd N ...`
(through the fork server when it is ready, `forkclient`: the same launcher, forked from a
process that has done its imports; cold otherwise) in a session of its own, with a clean
environment (the server's secrets stay out of the target) and the run's working directory
as cwd. The launcher kills the whole tree at its own `--timeout`; the watchdog here is the
backstop if it overruns by `kill_margin`. A cold launcher gets SIGKILL when the executing
thread dies (PR_SET_PDEATHSIG); a forked one when its fork server dies or its client's
connection closes. Its keeper then ends the target's tree: a killed worker leaves nothing
running.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bubble import events as ev
from bubble.jobs import schema
from bubble.jobs.ask import store_bridge
from bubble.jobs.forkclient import ForkServer, Launched
from bubble.jobs.hub import Hub
from bubble.jobs.ingest import EventSink, pump_events
from bubble.jobs.model import JobsConfig
from bubble.jobs.output import OutputPump
from bubble.jobs.store import Store, now_iso
from bubble.policy import Policy, to_argv

CAPTURES = "captures"  # the scratch folder's subfolder for --net-sim payloads
GRACE = 2.0  # seconds the output pipes may stay open after the launcher ended
READER_JOIN = 30.0
# How often a watched run re-reads its status for a cancel asked through the store (by
# another process); a cancel asked in this process wakes the watch at once.
CANCEL_POLL = 0.5

log = logging.getLogger("bubble.jobs")
Launcher = subprocess.Popen[bytes] | Launched  # a cold launcher, or one the fork server forked


class Runner:
    """Executes runs; `kill_all()` stops those in flight (server shutdown)."""

    def __init__(self, cfg: JobsConfig, store: Store, hub: Hub) -> None:
        self.cfg = cfg
        self.store = store
        self.hub = hub
        self._active: dict[str, Launcher] = {}
        self._wake: dict[str, int] = {}  # run id -> eventfd its watch also waits on
        self._lock = threading.Lock()
        self.forkserver: ForkServer | None = None
        if cfg.fork_server:
            self.forkserver = ForkServer(cfg.python, self._env(Path("/")))

    def close(self) -> None:
        """Stop the fork server (runs in flight are killed first, by `kill_all`)."""
        if self.forkserver is not None:
            self.forkserver.close()

    def launcher_argv(
        self, policy: Policy, argv: list[str], events_fd: int, scratch: Path | None = None
    ) -> list[str]:
        head = [self.cfg.python, "-m", "bubble", "run", *to_argv(policy)]
        if policy.net_sim and scratch is not None:
            head += ["--captures", str(scratch / CAPTURES)]  # payloads become artifacts
        return [*head, "--events-fd", str(events_fd), "--", *argv]

    def _env(self, workdir: Path) -> dict[str, str]:
        env = {
            "PATH": self.cfg.target_path,
            "HOME": str(workdir),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            # Python targets then stream their output live instead of at exit.
            "PYTHONUNBUFFERED": "1",
        }
        if "PYTHONPATH" in os.environ:  # an uninstalled checkout: the launcher needs it
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        return env

    def _start(
        self,
        cmd: list[str],
        passed: tuple[int, ...],
        out_w: int,
        err_w: int,
        workdir: Path,
        extra_env: dict[str, str],
    ) -> Launcher:
        """The launcher: forked by the fork server if it is ready, else started cold.
        Either way it gets exactly these descriptors (`passed` by number: the events pipe,
        and in ask mode the decision socket), this environment and cwd."""
        env = self._env(workdir) | extra_env
        if self.forkserver is not None:
            null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            try:
                fds = [null, out_w, err_w, *passed]
                launched = self.forkserver.spawn(cmd[4:], env, str(workdir), fds, list(passed))
            finally:
                os.close(null)
            if launched is not None:
                return launched
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out_w,
            stderr=err_w,
            pass_fds=passed,
            cwd=workdir,
            env=env,
            start_new_session=True,
            preexec_fn=die_with_parent(os.getpid()),
        )

    def kill_all(self) -> None:
        with self._lock:
            procs = list(self._active.values())
        for proc in procs:
            _kill_group(proc.pid)

    def cancel(self, run_id: str) -> bool:
        """Wake the watch of `run_id` if it runs here: it sees the run's `cancelling`
        status and kills the tree as the watchdog does. False if it does not run here."""
        with self._lock:
            fd = self._wake.get(run_id)
            if fd is not None:
                os.eventfd_write(fd, 1)
        return fd is not None

    def _cancel_asked(self, run_id: str) -> bool:
        state = self.store.run_state(run_id)
        return state is not None and state[0] == schema.CANCELLING

    def execute(
        self,
        run_id: str,
        argv: list[str],
        policy: Policy,
        workdir: Path,
        scratch: Path | None = None,
    ) -> RunResult:
        """Run the launcher to its end; what was seen is in the result. `scratch`: where
        --net-sim's captures go (the executor stores them and removes the folder)."""
        sink = EventSink(self.store, self.hub, run_id)
        ev_r, ev_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        cmd = self.launcher_argv(policy, argv, ev_w, scratch)
        stop = threading.Event()
        bridge, ask_fd = store_bridge(self.store, run_id, stop) if policy.ask else (None, None)
        passed = (ev_w,) if ask_fd is None else (ev_w, ask_fd)
        extra_env = {} if ask_fd is None else {"SUPERVISOR_JSON_FD": str(ask_fd)}
        try:
            proc = self._start(cmd, passed, out_w, err_w, workdir, extra_env)
        except OSError:
            for fd in (ev_r, out_r, err_r):
                os.close(fd)
            if bridge is not None:
                bridge.sock.close()
            raise
        finally:
            for fd in (out_w, err_w, *passed):
                os.close(fd)
        if bridge is not None:
            bridge.start()
        wake = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        with self._lock:
            self._active[run_id] = proc
            self._wake[run_id] = wake
        assert policy.timeout is not None
        cap = self.cfg.output_cap
        pumps = [
            OutputPump(out_r, self.store, run_id, "stdout", cap, self.hub),
            OutputPump(err_r, self.store, run_id, "stderr", cap, self.hub),
        ]
        reader = threading.Thread(
            target=pump_events, args=(ev_r, sink, stop), name=f"events-{run_id[:8]}", daemon=True
        )
        for thread in (*pumps, reader):
            thread.start()
        try:
            ended_by = _watch(
                proc,
                policy.timeout + self.cfg.kill_margin,
                wake,
                lambda: self._cancel_asked(run_id),
            )
        finally:
            with self._lock:
                self._active.pop(run_id, None)
                self._wake.pop(run_id, None)
            os.close(wake)
        deadline = time.monotonic() + GRACE
        stop.set()
        if bridge is not None:
            bridge.join(READER_JOIN)
        for pump in pumps:
            pump.stop()
        for pump in pumps:
            pump.join(max(0.1, deadline - time.monotonic()))
        # The reader owns the numbering until it ends: wait for it (it ends at EOF, or
        # once the pipe is idle) before anyone else adds events.
        reader.join(READER_JOIN)
        if reader.is_alive():
            log.error("run %s: the event reader did not finish", run_id)
        assert proc.returncode is not None  # `_watch` waited for it
        result = RunResult(sink, proc.returncode, ended_by == WATCHDOG, pumps[0], pumps[1])
        result.cancelled = ended_by == CANCELLED
        result.complete = not reader.is_alive()
        return result


class RunResult:
    """What `execute` observed."""

    def __init__(
        self,
        sink: EventSink,
        returncode: int,
        watchdog_fired: bool,
        stdout: OutputPump,
        stderr: OutputPump,
    ) -> None:
        self.sink = sink
        self.complete = True  # False if events may still be arriving (never in practice)
        self.cancelled = False  # a user's cancel killed the tree
        self.returncode = returncode
        self.watchdog_fired = watchdog_fired
        self.stdout = stdout
        self.stderr = stderr

    def launcher_error(self) -> ev.Error | None:
        """The launcher's own error (exit 125-127 and its `bubble: ...` line) as an event."""
        if self.returncode not in (125, 126, 127) or self.watchdog_fired or self.cancelled:
            return None
        line = _bubble_error(self.stderr.tail)
        if not line:
            return None
        message, _, hint = line.partition(" (hint: ")
        return ev.Error(
            action="launcher",
            message=message,
            hint=hint.removesuffix(")") or "check the command",
            status=self.returncode,
        )

    def outcome(self) -> dict[str, Any]:
        """The run row's final fields, from the exit event or, failing that, the launcher."""
        exit_ev = self.sink.exit_event or {}
        timed_out = bool(exit_ev.get("timed_out")) or self.watchdog_fired
        values: dict[str, Any] = {
            "launcher_status": self.returncode,
            "exit_code": exit_ev.get("exit_code"),
            "signal": exit_ev.get("signal"),
            "duration_ms": exit_ev.get("duration_ms"),
            "max_rss_kb": exit_ev.get("max_rss_kb"),
            "limit_hit": exit_ev.get("limit"),
            "timed_out": timed_out,
            "ended_at": now_iso(),
        }
        error = self.launcher_error()
        if self.cancelled:
            values.update(status=schema.CANCELLED, error="cancelled by a user", hint="run it again")
            if self.returncode < 0 and not exit_ev:
                values["signal"] = -self.returncode
        elif timed_out:
            values["status"] = schema.TIMEOUT
        elif error:
            values.update(status=schema.FAILED, error=error.message, exit_code=self.returncode)
            values["hint"] = error.hint
        elif self.sink.exit_event:
            values["status"] = schema.COMPLETED
        else:
            values.update(status=schema.FAILED, error="the launcher ended without an exit event")
            values["hint"] = "see the run's stderr artifact for the launcher's message"
            if self.returncode < 0:
                values["signal"] = -self.returncode
            else:
                values["exit_code"] = self.returncode
        return values


KEEPER_GRACE = 0.2  # seconds for the launcher's keeper to end the tree after the launcher died


WATCHDOG = "watchdog"
CANCELLED = "cancelled"


def _watch(
    proc: Launcher,
    limit: float,
    wake: int | None = None,
    cancel_asked: Callable[[], bool] = lambda: False,
) -> str | None:
    """Wait for the launcher; kill its tree if it overruns `limit` (returns `WATCHDOG`) or
    a cancel is asked (`CANCELLED`: `wake` became readable, or the store says so when
    polled). None if it ended by itself.

    The group is killed while the launcher is still unreaped, so its PID (the group id)
    cannot have been reused by an unrelated process.
    """
    pidfd = os.pidfd_open(proc.pid)
    deadline = time.monotonic() + limit
    ended_by: str | None = None
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                ended_by = WATCHDOG
                break
            fds = [pidfd] if wake is None else [pidfd, wake]
            ready = select.select(fds, [], [], min(left, CANCEL_POLL))[0]
            if pidfd in ready:
                break
            if (wake in ready or not ready) and cancel_asked():
                ended_by = CANCELLED
                break
            if wake is not None and wake in ready:
                os.eventfd_read(wake)
        if ended_by:
            _kill_group(proc.pid)
        else:
            # Stragglers that left the launcher's control (if any) go with the group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
    finally:
        os.close(pidfd)
    proc.wait()
    return ended_by


def _kill_group(pid: int) -> None:
    # The launcher first, alone: its keeper's parent-death signal then ends the target's tree,
    # which lives in a process group of its own. Killing the launcher's group at once would
    # take the keeper with it and leave that tree to run on.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)
        time.sleep(KEEPER_GRACE)
    # Already gone, or left by everyone but the zombie leader: nothing to kill.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _bubble_error(tail: bytes) -> str | None:
    """The launcher's own error line (`bubble: ...`) from the end of stderr, if any."""
    for line in reversed(tail.decode("utf-8", "replace").splitlines()):
        if line.startswith("bubble: "):
            return line[len("bubble: ") :][:500]
    return None


PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> Any:
    """A preexec hook: SIGKILL the launcher when the thread that started it ends (the
    worker was killed), and end at once if that already happened."""
    libc = ctypes.CDLL(None, use_errno=True)

    def hook() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(125)

    return hook


def orchestrator_notes(result: RunResult, timeout: float) -> list[dict[str, Any]]:
    """Events the orchestrator adds after the launcher's: cancellation, watchdog, capped
    output, and the launcher's own error (with its hint) when it could not run the program."""
    notes: list[ev.Msg | ev.Error] = []
    if result.cancelled:
        why = "a user cancelled the run; its process tree was killed"
        notes.append(ev.Msg(action="orchestrator.cancelled", message=why))
    if result.watchdog_fired:
        why = f"the run overran its {timeout:g}s limit; its process group was killed"
        notes.append(ev.Msg(action="orchestrator.watchdog", message=why))
    for name, pump in (("stdout", result.stdout), ("stderr", result.stderr)):
        if pump.dropped:
            capped = f"{name}: kept {pump.kept} bytes, dropped {pump.dropped}"
            notes.append(ev.Msg(action="orchestrator.output_capped", message=capped))
    error = result.launcher_error()
    if error is not None:
        notes.append(error)
    return [ev.as_dict(note) for note in notes]
