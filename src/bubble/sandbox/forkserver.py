"""`bubble forkserver SOCKET`: a pre-imported launcher that forks a fresh launcher per run.

A cold `python -m bubble run` spends most of its start-up on the interpreter and its imports
(docs/benchmarks.md). The orchestrator and `bubble worker` start this process once; each run
then costs a fork of an interpreter that has already imported the whole launcher.

Protocol (AF_UNIX SOCK_SEQPACKET, one connection per run, peers of our own uid only):
  client -> server  one JSON message {"args", "env", "cwd", "fds"} with SCM_RIGHTS carrying
                    the descriptors that become 0, 1, 2 and then each number in "fds"
  server -> client  {"pid": N} once forked, {"status": S} when the launcher ended (S as
                    `Popen.returncode`: the exit status, or -signal)
  client closes     the launcher is reaped only then, so its PID (and process group) stays
                    valid for the client's kills until the client has seen the status. A
                    client that goes away before the end takes its launcher with it (SIGKILL;
                    the keeper's parent-death signal then ends the tree, as for a cold run).

A forked launcher is made as clean as a cold one: a session of its own, signal mask empty
and dispositions as at interpreter start (this process never changes them), every
descriptor closed but the ones the run was given, the environment replaced by the run's,
its cwd. This process never starts a thread, so no lock can be held across the fork. It
exits when its stdin (a pipe from its owner) reaches EOF; its launchers die with it
(parent-death signal), as cold ones die with the worker that started them.
"""

from __future__ import annotations

import array
import contextlib
import gc
import json
import os
import select
import signal
import socket
import struct
import sys
from typing import Any

# What a run needs, imported once here instead of once per run.
from bubble import cli
from bubble import eventline as _eventline  # noqa: F401 - the sink's, imported per run
from bubble.policy import Policy
from bubble.sandbox import _abi, bpfcache, netns
from bubble.sandbox import launcher as _launcher  # noqa: F401
from bubble.sandbox import session as _session  # noqa: F401
from bubble.sandbox._libc import prctl

MAX_REQUEST = 1 << 20
MAX_FDS = 16
_HIGH_FD = 512  # received descriptors move above the targets before being placed
_SPARE_FD = _HIGH_FD - 1  # where a launcher keeps its spare network namespace
SPARE_IDLE = 0.02  # seconds without a request before the next spare wall is made


def _recv_request(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    fds = array.array("i")
    msg, anc, _flags, _addr = conn.recvmsg(MAX_REQUEST, socket.CMSG_SPACE(MAX_FDS * fds.itemsize))
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    return json.loads(msg), list(fds)


def _child(req: dict[str, Any], fds: list[int], server_pid: int, spare: int) -> None:
    """In the forked launcher: become a clean process, then run `bubble run`. Never returns.
    `spare`: a network namespace made ahead for this run (netns.make_spare), or -1."""
    status = 125
    try:
        os.setsid()
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        # As a cold launcher dies with the worker that started it: if this server dies, so
        # does the launcher (its keeper's parent-death signal then ends the target's tree).
        prctl(_abi.PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != server_pid:
            raise OSError("the fork server died before the run started")
        targets = [0, 1, 2, *[int(n) for n in req["fds"]]]
        if len(targets) != len(fds):
            raise ValueError("descriptor count does not match the request")
        high = [os.dup2(fd, _HIGH_FD + i, inheritable=False) for i, fd in enumerate(fds)]
        if spare >= 0:
            netns.SPARE.append(os.dup2(spare, _SPARE_FD, inheritable=False))
        for fd, target in zip(high, targets, strict=True):
            os.dup2(fd, target, inheritable=target in (0, 1, 2))
        keep = set(targets) | set(netns.SPARE)
        for fd in map(int, os.listdir("/proc/self/fd")):
            if fd not in keep:
                with contextlib.suppress(OSError):  # the listing's own, already gone
                    os.close(fd)
        os.environ.clear()
        os.environ.update(req["env"])
        os.chdir(str(req["cwd"]))
        args = [str(a) for a in req["args"]]
        sys.argv = ["bubble", "run", *args]
        status = cli.main(["run", *args])  # `run` ends the process itself; errors return
    except BaseException as err:  # noqa: BLE001 - nothing may return into the server loop
        with contextlib.suppress(OSError):
            os.write(2, f"bubble: fork server: {err!r}\n".encode())
    finally:
        os._exit(status)


# The filter shapes compiled once here (bpfcache): the web's and a worker's usual runs (the
# page asks for --notify-exec by default; writes allowed, to the host or into a layer; with
# or without the network), ~0.1 s at start.
WARM_POLICIES = tuple(
    Policy(deny_fs=deny_fs, deny_net=deny_net, notify_exec=notify_exec)
    for deny_fs in (True, False)
    for deny_net in (True, False)
    for notify_exec in (True, False)
)


def warm_up() -> None:
    """Do once what every run would: compile the usual filters (which loads libseccomp),
    then freeze what exists into the collector's permanent generation, so a collection in a
    launcher does not write to, and copy, every page it shares with us."""
    for policy in WARM_POLICIES:
        bpfcache.prepare(policy)
    gc.collect()
    gc.freeze()


def _status(pid: int) -> int:
    """The launcher's status as Popen reports it, leaving it unreaped (WNOWAIT)."""
    info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    assert info is not None
    return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status


class Server:
    def __init__(self, path: str) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.listener.bind(path)
        os.chmod(path, 0o600)
        self.listener.listen(64)
        self.conns: dict[int, socket.socket] = {}  # fd -> connection
        self.pid_of: dict[int, int] = {}  # connection fd -> its launcher
        self.pidfds: dict[int, int] = {}  # pidfd -> connection fd
        self.ended: dict[int, int] = {}  # launcher -> status (exited, not yet reaped)
        self.orphans: dict[int, int] = {}  # pidfd -> launcher whose client left
        # The next run's network wall, made while idle (netns.make_spare); root only.
        self.spare = -1
        self.spares = os.geteuid() == 0 and netns.plan(Policy())[0]

    def serve(self) -> None:
        os.write(1, f"ready {os.getpid()}\n".encode())
        while True:
            watched = [0, self.listener.fileno(), *self.conns, *self.pidfds, *self.orphans]
            idle = SPARE_IDLE if self.spares and self.spare < 0 else None
            ready = select.select(watched, [], [], idle)[0]
            if not ready:
                self._make_spare()
            for fd in ready:
                if fd == 0:
                    if not os.read(0, 64):
                        return  # the owner is gone
                elif fd == self.listener.fileno():
                    self._accept()
                elif fd in self.pidfds:
                    self._ended(fd)
                elif fd in self.orphans:
                    os.waitpid(self.orphans.pop(fd), 0)
                    os.close(fd)
                elif fd in self.conns:
                    self._readable(fd)

    def _make_spare(self) -> None:
        try:
            self.spare = netns.make_spare()
        except OSError as err:
            self.spares = False  # the launchers make their own, as cold ones do
            os.write(2, f"bubble: fork server: no spare network namespaces: {err}\n".encode())

    def _accept(self) -> None:
        conn, _ = self.listener.accept()
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        if struct.unpack("3i", creds)[1] != os.getuid():
            conn.close()  # only our own user may start launchers through us
            return
        self.conns[conn.fileno()] = conn

    def _readable(self, fd: int) -> None:
        conn = self.conns[fd]
        pid = self.pid_of.get(fd)
        if pid is None:
            self._fork(conn)
            return
        # Anything after the request (normally EOF) means the client is done with it.
        del self.conns[fd], self.pid_of[fd]
        conn.close()
        if pid in self.ended:
            del self.ended[pid]
            os.waitpid(pid, 0)
            return
        pidfd = next(p for p, c in self.pidfds.items() if c == fd)
        del self.pidfds[pidfd]
        with contextlib.suppress(ProcessLookupError):  # its client left: as a cold run
            os.kill(pid, signal.SIGKILL)
        self.orphans[pidfd] = pid

    def _fork(self, conn: socket.socket) -> None:
        try:
            req, fds = _recv_request(conn)
        except (OSError, ValueError):
            req, fds = {}, []
        if not req:
            for fd in fds:
                os.close(fd)
            del self.conns[conn.fileno()]
            conn.close()
            return
        server_pid = os.getpid()
        spare, self.spare = self.spare, -1  # each spare goes to one run only
        pid = os.fork()
        if pid == 0:
            _child(req, fds, server_pid, spare)
        for fd in (*fds, *([spare] if spare >= 0 else [])):
            os.close(fd)
        self.pid_of[conn.fileno()] = pid
        self.pidfds[os.pidfd_open(pid)] = conn.fileno()
        with contextlib.suppress(OSError):  # it left: its EOF is seen next, ending the run
            conn.send(json.dumps({"pid": pid}).encode())

    def _ended(self, pidfd: int) -> None:
        fd = self.pidfds.pop(pidfd)
        os.close(pidfd)
        pid = self.pid_of[fd]
        status = self.ended[pid] = _status(pid)
        with contextlib.suppress(OSError):
            self.conns[fd].send(json.dumps({"status": status}).encode())


def main(args: list[str]) -> int:
    if len(args) != 1:
        sys.stderr.write("usage: bubble forkserver SOCKET\n")
        return 2
    warm_up()
    server = Server(args[0])
    # Leave the owner's process tree (its runs' trees must be all that is below a worker);
    # stdin and stdout stay the owner's pipes, so it still ends with its owner.
    if os.fork():
        os._exit(0)
    server.serve()
    return 0
