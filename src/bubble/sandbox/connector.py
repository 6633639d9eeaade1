"""Connections a connect scope allows, made by the supervisor from the host's network.

The target's own sockets live inside its network namespace (the wall), where nothing leaves.
For a `connect` to an allowed endpoint the supervisor reads the address once (the decoder),
checks it (`netscope.py`), makes a socket of the same family, type and protocol in the host's
namespace, connects it to *its copy* of the address, and installs it in place of the target's
descriptor (`SECCOMP_IOCTL_NOTIF_ADDFD` with `SETFD`, keeping close-on-exec), with the target's
blocking mode. A target that rewrites the address after the check changes nothing.

A non-blocking caller gets its answer at once (`EINPROGRESS` for TCP, as the kernel would
give); a blocking one waits while a worker thread connects (bounded: `CONNECT_TIMEOUT`), and
the supervisor keeps serving every other call meanwhile. The threads only connect sockets; the
supervisor's own thread installs and answers.
"""

from __future__ import annotations

import _socket
import collections
import contextlib
import ctypes
import dataclasses
import errno
import fcntl
import os
import struct
import threading

from bubble import events
from bubble.sandbox import _abi, datagram, streamsend
from bubble.sandbox.sockinfo import sock_copy

TYPE_CHECKING = False
if TYPE_CHECKING:
    from bubble.sandbox.supervisor import Supervisor

ADDFD_FLAG_SETFD = 1
CONNECT_TIMEOUT = 75.0  # seconds: about Linux's own SYN retry limit for a blocking connect
MAX_WAITING = 64  # blocking connects in flight at once; beyond, EAGAIN
SOCK_STREAM = 1


class Connector:
    def __init__(self, sup: Supervisor, ours: set[int]) -> None:
        self.sup = sup
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.lock = threading.Lock()
        # (notification, target fd, our socket, errno, event, close-on-exec, of the wall)
        self.done: collections.deque[
            tuple[int, int, _socket.socket, int, events.Call, bool, bool]
        ] = collections.deque()
        self.waiting = 0
        # blocking stream sends a thread finished: (notification, bytes sent, errno, event)
        self.finished: collections.deque[tuple[int, int, int, events.Event | None]] = (
            collections.deque()
        )
        self.ours = ours  # inodes of the sockets we installed (NetPolicy lets their sends go)

    def fileno(self) -> int:
        return self.wake_r

    def start(
        self, nid: int, pid: int, fd: int, event: events.Call, walled: _socket.socket | None = None
    ) -> events.Call | None:
        """Connect for call `nid` of `pid` on its socket `fd`. Returns the event when answered
        now, None when a thread will finish it. With `walled` (our checked copy of the
        target's socket inside the wall, `--net-sim`), that very socket is connected instead:
        it can only reach the simulated internet, and nothing is installed."""
        fd = ctypes.c_int32(fd).value
        peer, port = str(event.peer), int(event.port or 0)
        if walled is not None:
            return self._start_walled(nid, fd, walled, (_mapped(walled.family, peer), port), event)
        copy = sock_copy(pid, fd)
        if copy is None:  # no socket (or gone): what the kernel would say
            return self._answer(nid, fd, None, errno.ENOTSOCK, event, False)
        family, kind, proto = copy.family, copy.type & 0xF, copy.proto
        nonblock = bool(fcntl.fcntl(copy.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK)
        cloexec = _cloexec(pid, fd)
        copy.close()
        peer = _mapped(family, peer)
        try:
            sock = _socket.socket(family, kind, proto)
        except OSError as exc:
            return self._answer(nid, fd, None, exc.errno or errno.EPERM, event, cloexec)
        if nonblock or kind != SOCK_STREAM:
            sock.setblocking(False)
            err = sock.connect_ex((peer, port))
            if err not in (0, errno.EINPROGRESS):
                sock.close()
                return self._answer(nid, fd, None, err, event, cloexec)
            if not nonblock:
                sock.setblocking(True)
            return self._answer(nid, fd, sock, err, event, cloexec)
        return self._in_thread(nid, fd, sock, (peer, port), event, cloexec)

    def _start_walled(
        self,
        nid: int,
        fd: int,
        sock: _socket.socket,
        addr: tuple[str, int],
        event: events.Call,
    ) -> events.Call | None:
        # The copy shares the target's open file description, so its blocking mode is the
        # target's: never changed here (settimeout would set O_NONBLOCK for the target too).
        if sock.type & 0xF != SOCK_STREAM or not os.get_blocking(sock.fileno()):
            err = sock.connect_ex(addr)
            sock.close()
            return self._answer(nid, fd, None, err, event, False, walled=True)
        return self._in_thread(nid, fd, sock, addr, event, False, walled=True)

    def _in_thread(
        self,
        nid: int,
        fd: int,
        sock: _socket.socket,
        addr: tuple[str, int],
        event: events.Call,
        cloexec: bool,
        walled: bool = False,
    ) -> events.Call | None:
        with self.lock:
            if self.waiting >= MAX_WAITING:
                sock.close()
                return self._answer(nid, fd, None, errno.EAGAIN, event, cloexec, walled)
            self.waiting += 1
        threading.Thread(
            target=self._connect,
            args=(nid, fd, sock, addr, event, cloexec, walled),
            name="connect",
            daemon=True,
        ).start()
        return None

    def send(
        self, nid: int, event: events.Event | None, plan: datagram.Plan | streamsend.StreamPlan
    ) -> events.Event | None:
        """Carry out a send read once (datagram.py, streamsend.py) and answer call `nid`;
        None when a thread finishes it (a blocking stream send the socket cannot take yet)."""
        if isinstance(plan, streamsend.StreamPlan):
            return self._stream(nid, event, plan)

        def install(sock: _socket.socket) -> None:
            self._install(nid, plan.fd, sock, _cloexec(plan.pid, plan.fd))

        try:
            value, err = datagram.carry_out(plan, install)
        finally:
            plan.close()
        self.sup.send(nid, value, err, 0)
        where = "from the host's network" if plan.replace or plan.host else "inside the wall"
        detail = f"sent by the supervisor {where}"
        if plan.replace:
            detail += " on a socket of its own installed in place of the target's"
        return _said(event, err, detail)

    def _stream(
        self, nid: int, event: events.Event | None, plan: streamsend.StreamPlan
    ) -> events.Event | None:
        sent, err, wait = streamsend.send_now(plan)
        if wait:
            with self.lock:
                room = self.waiting < MAX_WAITING
                self.waiting += room
            if room:
                threading.Thread(
                    target=self._finish_stream, args=(nid, event, plan, sent), daemon=True
                ).start()
                return None
            err = 0 if sent else errno.EAGAIN
        plan.close()
        self.sup.send(nid, sent if not err else 0, err, 0)
        return _said(event, err, "sent by the supervisor on its copy of the socket")

    def _finish_stream(
        self, nid: int, event: events.Event | None, plan: streamsend.StreamPlan, sent: int
    ) -> None:
        listener, key = self.sup.listener, bytearray(struct.pack("<Q", nid))

        def waiting() -> bool:  # our own buffer: the loop thread's is not ours to share
            try:
                fcntl.ioctl(listener, _abi.IOCTL_NOTIF_ID_VALID, key, True)
                return True
            except OSError:
                return False

        try:
            sent, err = streamsend.send_rest(plan, sent, waiting)
        finally:
            plan.close()
        with self.lock:
            self.waiting -= 1
            self.finished.append((nid, sent, err, event))
        os.write(self.wake_w, b"x")

    def _connect(
        self,
        nid: int,
        fd: int,
        sock: _socket.socket,
        addr: tuple[str, int],
        event: events.Call,
        cloexec: bool,
        walled: bool,
    ) -> None:
        if not walled:  # a socket of the wall is the target's too: its mode stays
            sock.settimeout(CONNECT_TIMEOUT)
        try:
            sock.connect(addr)
            err = 0
        except TimeoutError:
            err = errno.ETIMEDOUT
        except OSError as exc:
            err = exc.errno or errno.ECONNREFUSED
        with self.lock:
            self.waiting -= 1
            self.done.append((nid, fd, sock, err, event, cloexec, walled))
        os.write(self.wake_w, b"x")

    def on_readable(self) -> bool:
        with contextlib.suppress(BlockingIOError):
            os.read(self.wake_r, 4096)
        while True:
            with self.lock:
                if not self.finished:
                    break
                nid, sent, err, ev = self.finished.popleft()
            self.sup.send(nid, sent if not err else 0, err, 0)  # ENOENT if gone: ignored
            said = _said(ev, err, "sent by the supervisor on its copy of the socket")
            if said is not None:
                self.sup.writer.emit(said)
        while True:
            with self.lock:
                if not self.done:
                    return True
                nid, fd, sock, err, event, cloexec, walled = self.done.popleft()
            if not self.sup.valid(nid):
                sock.close()
                self.sup.writer.emit(
                    dataclasses.replace(event, detail="caller gone before the connect")
                )
                continue
            installed: _socket.socket | None = sock
            if err or walled:
                sock.close()  # a socket of the wall is connected where it is: nothing to install
                installed = None
            else:
                sock.setblocking(True)  # the target's socket was blocking
            self.sup.writer.emit(self._answer(nid, fd, installed, err, event, cloexec, walled))

    def _answer(
        self,
        nid: int,
        fd: int,
        sock: _socket.socket | None,
        err: int,
        event: events.Call,
        cloexec: bool,
        walled: bool = False,
    ) -> events.Call:
        detail = "connected by the supervisor from the host's network"
        if walled:
            detail = "connected by the supervisor inside the wall (the simulated internet)"
        if sock is not None:
            try:
                self._install(nid, fd, sock, cloexec)
            except OSError as exc:
                err = exc.errno or errno.EBADF
                detail = "could not install the connected socket"
            finally:
                sock.close()
        self.sup.send(nid, 0, err, 0)
        return dataclasses.replace(
            event,
            denied=errno.errorcode.get(err) if err and err != errno.EINPROGRESS else None,
            detail=detail + (f": {errno.errorcode.get(err, err)}" if err else ""),
        )

    def _install(self, nid: int, fd: int, sock: _socket.socket, cloexec: bool) -> None:
        flags = os.O_CLOEXEC if cloexec else 0
        addfd = _abi.ADDFD.pack(nid, ADDFD_FLAG_SETFD, sock.fileno(), fd, flags)
        fcntl.ioctl(self.sup.listener, _abi.IOCTL_NOTIF_ADDFD, bytearray(addfd), True)
        self.ours.add(os.fstat(sock.fileno()).st_ino)


def _said(event: events.Event | None, err: int, detail: str) -> events.Event | None:
    """`event` with the outcome of a send the supervisor made (None stays None)."""
    if not isinstance(event, events.Call):
        return event
    return dataclasses.replace(
        event,
        denied=errno.errorcode.get(err, str(err)) if err else None,
        detail=detail + (f": {errno.errorcode.get(err, err)}" if err else ""),
    )


def _mapped(family: int, peer: str) -> str:
    """`peer` as an AF_INET6 socket needs it: an IPv4 address in its mapped form."""
    return "::ffff:" + peer if family == _abi.AF_INET6 and "." in peer else peer


def _cloexec(pid: int, fd: int) -> bool:
    """Whether the target's descriptor `fd` is close-on-exec (its fdinfo `flags`, octal)."""
    try:
        with open(f"/proc/{pid}/fdinfo/{fd}", "rb") as fh:
            for line in fh:
                if line.startswith(b"flags:"):
                    return bool(int(line.split()[1], 8) & os.O_CLOEXEC)
    except (OSError, ValueError, IndexError):
        pass
    return False
