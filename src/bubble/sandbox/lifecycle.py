"""Every process's end: `process.end` for each process of the tree other than the root.

A parent reaps its own children, so neither the keeper nor the supervisor ever sees most ends
(a shell's child killed by SIGSEGV leaves no trace in a seccomp log: it makes no system call).
The kernel's process-events connector (netlink, `NETLINK_CONNECTOR`/`CN_IDX_PROC`) tells a
listener about every fork and exit as it happens, with the wait status, so:

- no per-call or per-fork cost on the target's side beyond the kernel's multicast of two small
  messages per process (bench: fork+exit+wait of a C loop, 10 000 rounds, with and without a
  listener: noted in docs/benchmarks.md);
- threads are told apart (`child_tgid == parent_tgid`) and a process ends when its last task
  does, so a thread-group leader that exited early (KERNEL-NOTES 17) is not reported too soon;
- orphans keep their identity: the tree is known from fork events, whoever reaps them.

The connector needs CAP_NET_ADMIN in the initial user namespace; without it the run says so
with a `sandbox.msg` and has no `process.end` events. The listener sees every process of the
machine: the tree is filtered from fork events rooted at the keeper.
"""

from __future__ import annotations

import errno
import os
import signal
import struct
from _socket import AF_NETLINK, SO_RCVBUF, SOCK_CLOEXEC, SOCK_DGRAM, SOL_SOCKET
from _socket import socket as _sock  # the C module: `socket` costs ~3 ms of start-up

from bubble import events

TYPE_CHECKING = False  # `typing` costs start-up time; mypy still reads this block
if TYPE_CHECKING:
    from bubble.sandbox.eventlog import EventWriter

_NETLINK_CONNECTOR = 11
_CN_IDX_PROC = 1
_CN_VAL_PROC = 1
_PROC_CN_MCAST_LISTEN = 1
_NLMSG_DONE = 3
_FORK = 0x00000001
_EXIT = 0x80000000
_HEADER = struct.Struct("=IHHII")  # nlmsghdr
_CN_MSG = struct.Struct("=IIIIHH")  # cb_id.idx, cb_id.val, seq, ack, len, flags
_EVENT = struct.Struct("=IIQ")  # what, cpu, timestamp_ns
_FORK_DATA = struct.Struct("=iiii")  # parent pid, parent tgid, child pid, child tgid
_EXIT_DATA = struct.Struct("=iiIIii")  # pid, tgid, exit_code, exit_signal, parent pid, tgid
_DATA_AT = _HEADER.size + _CN_MSG.size + _EVENT.size
_RCVBUF = 8 << 20  # a fork bomb's events between two turns of the loop (root may force it)
# Signals whose default action dumps core: with RLIMIT_CORE 0 the kernel refuses the dump.
_CORE_SIGNALS = frozenset(
    int(s)
    for s in (
        signal.SIGQUIT, signal.SIGILL, signal.SIGTRAP, signal.SIGABRT, signal.SIGBUS,
        signal.SIGFPE, signal.SIGSEGV, signal.SIGXCPU, signal.SIGXFSZ, signal.SIGSYS,
    )
)  # fmt: skip


def open_listener() -> tuple[_sock | None, str | None]:
    """A subscribed connector socket, or (None, why not). Open it before the keeper forks:
    the fork of the target must be seen for the tree to be known."""
    try:
        sock = _sock(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, _NETLINK_CONNECTOR)
    except OSError as err:
        return None, f"process.end events unavailable: {err.strerror} (no process connector)"
    try:
        try:
            sock.setsockopt(SOL_SOCKET, 33, _RCVBUF)  # SO_RCVBUFFORCE
        except OSError:
            sock.setsockopt(SOL_SOCKET, SO_RCVBUF, _RCVBUF)
        sock.bind((0, _CN_IDX_PROC))
        op = struct.pack("=I", _PROC_CN_MCAST_LISTEN)
        msg = _CN_MSG.pack(_CN_IDX_PROC, _CN_VAL_PROC, 0, 0, len(op), 0) + op
        sock.send(_HEADER.pack(_HEADER.size + len(msg), _NLMSG_DONE, 0, 0, 0) + msg)
    except OSError as err:
        sock.close()
        return None, (
            f"process.end events unavailable: {err.strerror} "
            "(the process connector needs CAP_NET_ADMIN; run bubble as root)"
        )
    sock.setblocking(False)
    return sock, None


def end_fields(status: int) -> dict[str, object]:
    """`exit_code` or `signal`/`signal_name`/`core_suppressed` from a raw wait status."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"SIG{sig}"
        out: dict[str, object] = {"signal": sig, "signal_name": name}
        if sig in _CORE_SIGNALS:
            out["core_suppressed"] = not os.WCOREDUMP(status)
        return out
    return {"exit_code": os.WEXITSTATUS(status)}


class Lifecycle:
    """Follows the tree under `root` (the keeper) from connector messages and emits
    `process.end` for every process in it except `root` itself and those in `skip`."""

    def __init__(self, sock: _sock, writer: EventWriter) -> None:
        self.sock = sock
        self.writer = writer
        self.root = 0
        self.skip: frozenset[int] = frozenset()
        self.tasks: dict[int, set[int]] = {}  # tgid -> live task ids
        self.parent: dict[int, int] = {}  # tgid -> parent tgid at fork
        self.status: dict[int, int] = {}  # tgid -> the last wait status seen
        self.pending: list[bytes] = []  # read before `root` was known
        self.lost = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def start(self, root: int, skip: frozenset[int]) -> None:
        self.root, self.skip = root, skip
        self.tasks[root] = {root}
        backlog, self.pending = self.pending, []
        for data in backlog:
            self._message(data)

    def on_readable(self) -> bool:
        """Read what the kernel queued; True (the socket never ends while we listen)."""
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return True
            except OSError as err:
                if err.errno == errno.ENOBUFS:  # the kernel dropped messages: say so below
                    self.lost += 1
                    continue
                return True
            if self.root:
                self._message(data)
            else:
                self.pending.append(data)

    def _message(self, data: bytes) -> None:
        if len(data) < _DATA_AT + _FORK_DATA.size:
            return
        what = _EVENT.unpack_from(data, _HEADER.size + _CN_MSG.size)[0]
        if what == _FORK:
            _ppid, ptgid, pid, tgid = _FORK_DATA.unpack_from(data, _DATA_AT)
            if ptgid in self.tasks:
                self.tasks.setdefault(tgid, set()).add(pid)
                if tgid != ptgid:
                    self.parent[tgid] = ptgid
        elif what == _EXIT and len(data) >= _DATA_AT + _EXIT_DATA.size:
            pid, tgid, code, _sig, _pp, ptgid = _EXIT_DATA.unpack_from(data, _DATA_AT)
            live = self.tasks.get(tgid)
            if live is None:
                return
            live.discard(pid)
            if pid == tgid or tgid not in self.status:
                self.status[tgid] = code
            if not live:
                del self.tasks[tgid]
                self._ended(tgid, ptgid, self.status.pop(tgid))

    def _ended(self, tgid: int, ptgid: int, status: int) -> None:
        if tgid == self.root or tgid in self.skip:
            return
        # The parent at exit (the reaper, for an orphan) is what `wait` sees; the parent at
        # fork is who made it: report the latter, as the tree does.
        ppid = self.parent.pop(tgid, ptgid)
        self.writer.emit(events.End(pid=tgid, ppid=ppid, **end_fields(status)))  # type: ignore[arg-type]

    def finish(self) -> None:
        """Every task is gone: read the rest and say whether the kernel dropped any."""
        self.on_readable()
        if self.lost:
            self.writer.emit(
                events.Msg(
                    action="degraded",
                    message=f"the process connector overflowed {self.lost} time(s): "
                    "some process.end events are missing",
                )
            )
        self.sock.close()
