"""`--net-sim` from the supervisor's side: start the simulated internet (`bubble.netsim`)
inside the target's network namespace before the target runs, turn its records into events
on the run's private channel, and stop it when the target's tree has ended.

The server is a fork of the supervisor, not of the target's child: it is outside the
target's process group, its subtree and its filter, runs with the launcher's identity (the
target runs as `nobody` under root, and Landlock scopes its signals otherwise) and is
non-dumpable like us. It joins the target's namespaces with setns (the user namespace
first when the launcher is not root), after checking that they are not ours: it installs
nftables rules and binds port 53, which must never happen on the host.

Its records arrive on a pipe only it holds; each is checked field by field
(`events.from_record`) before the writer numbers it, so a confused server cannot forge
another event type.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import select
import signal

from bubble import events
from bubble.sandbox import _abi
from bubble.sandbox._libc import prctl, setns
from bubble.sandbox.eventlog import EventWriter

CLONE_NEWNET = 0x40000000
READY_TIMEOUT = 10.0  # seconds for the server to enter the namespace and bind
STOP_TIMEOUT = 5.0  # seconds to record what is open after SIGTERM before SIGKILL


def _ns(pid: int | str, kind: str) -> int:
    return os.stat(f"/proc/{pid}/ns/{kind}").st_ino


class SimulatedInternet:
    """One run's server: `fd` is the records pipe to watch, `on_records` its callback.

    `fork()` starts it early; `join(target)` sends it into the target's namespace and waits
    until its rules and sockets are in place (`netsim.sockets`); it imports asyncio, ssl and
    dnslib (most of its start-up) after that, while the kernel queues what the target sends."""

    def __init__(self, pid: int, fd: int, cmd_w: int, ready_r: int, writer: EventWriter):
        self.pid = pid
        self.fd = fd
        self.cmd_w = cmd_w
        self.ready_r = ready_r
        self.writer = writer
        self.partial = b""
        self.ended = False
        self.reaped = False  # set by the session's reaper if it died first

    @classmethod
    def fork(
        cls, captures: str | None, body: bytes | None, writer: EventWriter
    ) -> SimulatedInternet:
        rec_r, rec_w = os.pipe2(os.O_CLOEXEC)
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        cmd_r, cmd_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            _server(cmd_r, rec_w, ready_w, captures, body)  # never returns
        for fd in (rec_w, ready_w, cmd_r):
            os.close(fd)
        return cls(pid, rec_r, cmd_w, ready_r, writer)

    def fds(self) -> tuple[int, ...]:
        """Our ends of its pipes: the keeper and the target must not hold them."""
        return (self.fd, self.cmd_w, self.ready_r)

    def join(self, target: int) -> str | None:
        """Serve inside `target`'s network namespace; None once it does, else why not."""
        if _ns(target, "net") == _ns("self", "net"):
            self.stop()
            return "the target shares our network namespace: no simulated internet on the host"
        try:
            os.write(self.cmd_w, f"{target}\n".encode())
        except OSError as err:
            line = f"it is gone ({err.strerror})"
        else:
            ready, _, _ = select.select([self.ready_r], [], [], READY_TIMEOUT)
            line = os.read(self.ready_r, 4096).decode(errors="replace").strip() if ready else ""
        if line == "ready":
            return None
        self.stop()
        return line.removeprefix("error ") or "the simulated internet did not start in time"

    def on_records(self) -> bool:
        """Read what the server wrote and emit it; False at end of file."""
        try:
            data = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return True
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            self._emit(line)
        if not data:
            self.ended = True
        return bool(data)

    def _emit(self, line: bytes) -> None:
        try:
            event = events.from_record(json.loads(line))
        except ValueError as err:  # json.JSONDecodeError is a ValueError
            event = events.Msg(action="net-sim", message=f"malformed record dropped: {err}")
        self.writer.emit(event)

    def stop(self) -> None:
        """SIGTERM: the server records what is still open and exits; read to the end."""
        for fd in (self.cmd_w, self.ready_r):
            with contextlib.suppress(OSError):
                os.close(fd)
        if not self.reaped:
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGTERM)
        os.set_blocking(self.fd, True)
        killed = False
        while not self.ended:
            ready, _, _ = select.select([self.fd], [], [], STOP_TIMEOUT)
            if not ready:  # wedged: end it (its records so far are emitted)
                killed = True
                if not self.reaped:
                    with contextlib.suppress(OSError):
                        os.kill(self.pid, signal.SIGKILL)
                break
            self.on_records()
        self.ended = True
        os.close(self.fd)
        if not self.reaped:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
            self.reaped = True
        if killed:
            self.writer.emit(
                events.Msg(action="net-sim", message="the simulated internet had to be killed")
            )


def _server(cmd_r: int, rec_w: int, ready_w: int, captures: str | None, body: bytes | None) -> None:
    """The forked server: leave the supervisor's state, wait for the target's pid, check and
    enter its namespaces, bind and say ready, then import the heavy parts and serve."""
    code = 1
    try:
        prctl(_abi.PR_SET_PDEATHSIG, signal.SIGKILL)  # never outlive the supervisor
        signal.set_wakeup_fd(-1)  # the supervisor's pipe
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        os.setsid()  # out of the supervisor's group: a ^C or a killpg is not for us
        keep = {cmd_r, rec_w, ready_w}
        low = 3
        for fd in sorted(keep):
            os.closerange(low, fd)
            low = fd + 1
        os.closerange(low, 1 << 20)
        devnull = os.open("/dev/null", os.O_RDWR)
        os.dup2(devnull, 0)  # the target's terminal is not ours to read
        os.close(devnull)
        from bubble.netsim.sockets import bind  # light: the heavy imports come after "ready"

        line = os.read(cmd_r, 64).decode().strip()
        if not line:
            os._exit(0)  # the run ended before it needed us
        target = int(line)
        if _ns(target, "net") == _ns("self", "net"):
            raise OSError(0, "the target shares our network namespace")
        join = [os.open(f"/proc/{target}/ns/net", os.O_RDONLY | os.O_CLOEXEC)]
        if _ns(target, "user") != _ns("self", "user"):
            join.insert(0, os.open(f"/proc/{target}/ns/user", os.O_RDONLY | os.O_CLOEXEC))
        for fd in join:  # the user namespace first, when there is one to join
            setns(fd, 0)
            os.close(fd)
        bound = bind(routes=False)  # the wall made every address local already
        os.write(ready_w, b"ready\n")
        os.close(ready_w)
        ready_w = -1
        from bubble.netsim.server import Config, serve

        cfg = Config(records_fd=rec_w, ready_fd=-1, captures=captures)
        code = serve(dataclasses.replace(cfg, body=body) if body is not None else cfg, bound)
    except BaseException as err:  # noqa: BLE001 - a forked child must never return
        message = f"error cannot start in the target's namespace: {err}\n".encode()
        with contextlib.suppress(OSError):
            os.write(ready_w if ready_w >= 0 else 2, message)
    finally:
        os._exit(code)
