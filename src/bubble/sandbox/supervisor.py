"""The supervisor loop: receive a notification, decode, decide, answer, record.

One loop thread serves the listener, and the answer is sent before the event is written; the
loop ends when the listener reports POLLHUP (no task uses the filter any more), however many
descendants the target left behind. Memory reads are bounded in size *and* in time: a read
of a page the target keeps from resolving (userfaultfd, a FUSE file) sleeps in the kernel,
killable only. So the calling thread watches the loop thread: a notification that takes more
than READ_BOUND is answered EPERM without its context (`<unreadable: ETIMEDOUT>`) and a new
loop thread takes over; the stuck one ends, unheard, when its read does.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import functools
import os
import select
import struct
import threading
import time
from collections.abc import Callable

from bubble import events
from bubble.policy import Policy
from bubble.sandbox import _abi
from bubble.sandbox import _libseccomp as scmp
from bubble.sandbox.connector import Connector
from bubble.sandbox.decide import (
    ATTEMPT,
    CONNECT,
    CONTINUE,
    DENY,
    DONE,
    GUARDED,
    INJECT,
    PERFORM,
    SEND,
    Decision,
    alert,
    decide,
)
from bubble.sandbox.decode import Decoder
from bubble.sandbox.eventlog import EventWriter
from bubble.sandbox.netpolicy import NetPolicy
from bubble.sandbox.netscope import ConnectScopes
from bubble.sandbox.onbehalf import Outside, carry_out
from bubble.sandbox.performed import attempt, guarded, result_of
from bubble.sandbox.procmem import copy_fd, status_fields
from bubble.sandbox.syscalls import BY_NAME, BY_NR, Syscall
from bubble.scopes import covering

TYPE_CHECKING = False  # `typing` costs start-up time; mypy still reads this block
if TYPE_CHECKING:
    from bubble.sandbox.held import HeldCalls

_ZERO = bytes(_abi.NOTIF_SIZE)
_U64 = struct.Struct("<Q")
_NON_NATIVE_EXIT = frozenset({"exit", "exit_group"})
_UNKNOWN = Syscall("unknown", -1, "sys", (), "sys")
READ_BOUND = 1.0  # seconds one notification may take; decoding normally takes microseconds
MAX_STALLS = 8  # stuck loop threads tolerated in one run before the supervisor gives up
TIMED_OUT = "<unreadable: ETIMEDOUT>"
_RENAMES = frozenset({"rename", "renameat", "renameat2"})
MAX_RENAMES = 10_000


def _tty_nr(pid: int) -> int | None:
    """The controlling terminal's device number of `pid` (0: none), from /proc/PID/stat."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    return int(stat[stat.rfind(b")") + 2 :].split()[4])


class Supervisor:
    """Serves one listener for one run."""

    def __init__(
        self,
        listener: int,
        policy: Policy,
        writer: EventWriter,
        exempt: frozenset[int] = frozenset(),
    ) -> None:
        self.listener = listener
        self.policy = policy
        self.writer = writer
        self.decoder = Decoder()
        scopes = ConnectScopes(policy.connect) if policy.connect else None
        self.net = NetPolicy(policy, self.decoder, scopes)
        self.connector = Connector(self, self.net.ours) if scopes else None
        for note in scopes.notes if scopes else ():
            writer.emit(events.Msg(action="policy", message=note))
        self.exempt = exempt  # our own helper processes (pidns init): not the target's RSS
        # Write scopes as real paths: what a pinned object's /proc/self/fd link is checked on.
        self.scopes = tuple(os.path.realpath(s) for s in policy.write)
        self.max_rss_kb = 0
        self.max_vm_kb = 0  # peak address space, to tell whether --memory was reached
        self.handled = 0
        self._buf = bytearray(_abi.NOTIF_SIZE)
        self._resp = bytearray(_abi.RESP_SIZE)
        self._id = bytearray(8)
        self._names: dict[tuple[int, int], str] = {}
        # Stall guard: the notification being handled, and the loop generation; a rescued
        # (abandoned) loop thread sees a newer generation and stops without answering.
        self._current: tuple[int, ...] | None = None
        self._generation = 0
        self._lock = threading.Lock()
        self._failure: BaseException | None = None
        self.stalls = 0
        # --fs-overlay: new path -> old path of the renames seen, so the layer's report can
        # call a deletion plus a creation a rename (bounded: a hint, not a record).
        self.renames: dict[str, str] | None = {} if policy.fs_overlay is not None else None
        self.layer_mounts: frozenset[int] | None = None  # performed.layer_mounts, once
        self.held = _held_calls(self, policy)

    # -- answering ---------------------------------------------------------------------------
    def _send(self, nid: int, error: int, flags: int) -> None:
        self.send(nid, 0, error, flags)

    def send(self, nid: int, val: int, error: int, flags: int) -> None:
        """Answer notification `nid`: return `val`, or fail with `error`, or CONTINUE."""
        _abi.RESP.pack_into(self._resp, 0, nid, val, -error, flags)
        try:
            fcntl.ioctl(self.listener, _abi.IOCTL_NOTIF_SEND, self._resp, True)
        except OSError as err:
            if err.errno != errno.ENOENT:  # ENOENT: the caller died or was interrupted
                raise

    def valid(self, nid: int) -> bool:
        return self._valid(nid)

    def install(self, nid: int, fd: int, nr: int, args: tuple[int, ...]) -> int:
        """Install our descriptor `fd` as the result of open-like call `nid` (ADDFD|SEND)."""
        cloexec = self._open_flags(nr, args) & os.O_CLOEXEC
        buf = bytearray(_abi.ADDFD.pack(nid, _abi.ADDFD_FLAG_SEND, fd, 0, cloexec))
        return fcntl.ioctl(self.listener, _abi.IOCTL_NOTIF_ADDFD, buf, True)

    def _valid(self, nid: int) -> bool:
        try:
            _U64.pack_into(self._id, 0, nid)
            fcntl.ioctl(self.listener, _abi.IOCTL_NOTIF_ID_VALID, self._id, True)
            return True
        except OSError:
            return False

    def _inject(self, nid: int, pid: int, source: str, flags: int) -> int:
        """Open `source` ourselves (or dup the target's own fd) and install it as the result."""
        if source.startswith("fd:"):
            fd = copy_fd(pid, int(source[3:]))
        else:
            if source == "/dev/tty":
                # /dev/tty means the *caller's* terminal: it may have none (after setsid), or
                # another one than ours; both answer like the kernel would for a missing one.
                tty = _tty_nr(pid)
                if not tty or tty != _tty_nr(os.getpid()):
                    raise OSError(errno.ENXIO, os.strerror(errno.ENXIO))
            access = flags & 3 if flags & 3 != 3 else os.O_RDWR
            fd = os.open(source, access | (flags & (os.O_APPEND | os.O_NONBLOCK)) | os.O_CLOEXEC)
        try:
            addfd = _abi.ADDFD.pack(nid, _abi.ADDFD_FLAG_SEND, fd, 0, flags & os.O_CLOEXEC)
            return fcntl.ioctl(self.listener, _abi.IOCTL_NOTIF_ADDFD, bytearray(addfd), True)
        finally:
            os.close(fd)

    # -- one notification --------------------------------------------------------------------
    def handle(self, generation: int = 0) -> None:
        buf = self._buf
        buf[:] = _ZERO  # the kernel rejects a non-zeroed buffer with EINVAL
        try:
            fcntl.ioctl(self.listener, _abi.IOCTL_NOTIF_RECV, buf, True)
        except OSError as err:
            if err.errno in (errno.ENOENT, errno.EINTR):
                return  # the caller went away between poll and receive
            raise
        notif = self._current = _abi.NOTIF.unpack(buf)
        nid, pid, nr, arch, args = notif[0], notif[1], notif[3], notif[4], notif[6:]
        self.handled += 1
        if arch != _abi.AUDIT_ARCH_X86_64 or nr & _abi.X32_SYSCALL_BIT:
            decision = self._non_native(pid, nr, arch, args)
        else:
            row = BY_NR.get(nr, _UNKNOWN)
            if row.category == "internal":
                if pid not in self.exempt:
                    self._exiting(pid)
                with self._lock:
                    if generation == self._generation:
                        self._current = None
                        self._send(nid, 0, _abi.USER_NOTIF_FLAG_CONTINUE)
                return
            decision = self._native(row, pid, nr, args)
        with self._lock:
            if generation != self._generation:
                return  # we stalled: the watcher has answered this one and taken over
            self._current = None
            self._answer(nid, pid, nr, args, decision)

    def _native(self, row: Syscall, pid: int, nr: int, args: tuple[int, ...]) -> Decision:
        decoder = self.decoder  # once: after a stall the watcher gives the next loop a new one
        ctx = decoder.fields(row, pid, args, self.policy.peek_tx)
        if row.category == "net":
            return self.net.decide(row, nr, pid, ctx, args)
        how_flags = None
        if row.name == "openat2":
            how_flags, extra = decoder.open_how(pid, args[2])
            ctx.update(extra)
        elif row.rule.startswith("adjtime:"):
            how_flags, extra = decoder.timex_modes(pid, args[int(row.rule[8:])])
            ctx.update(extra)
        if self.renames is not None and row.name in _RENAMES and len(self.renames) < MAX_RENAMES:
            old, new = ctx.get("path"), ctx.get("path2")
            if isinstance(old, str) and isinstance(new, str):
                self.renames[new] = old
        return decide(row, nr, pid, ctx, self.policy, args, how_flags)

    def _non_native(self, pid: int, nr: int, arch: int, args: tuple[int, ...]) -> Decision:
        if nr & _abi.X32_SYSCALL_BIT and arch == _abi.AUDIT_ARCH_X86_64:
            arch_name, name = "x32", BY_NR.get(nr & ~_abi.X32_SYSCALL_BIT, _UNKNOWN).name
        else:
            arch_name = _abi.ARCH_NAMES.get(arch, hex(arch))
            key = (arch, nr)
            name = self._names.get(key) or ""
            if not name:
                known = scmp.name_of(arch, nr)
                if known:  # cache real names only: the set stays bounded
                    self._names[key] = known
                name = known or f"#{nr}"
        if name in _NON_NATIVE_EXIT:
            return Decision.cont()  # let it end: never kill by policy
        row = BY_NAME.get(name)
        decoder = self.decoder  # once (see _native)
        ctx = decoder.fields(row, pid, args) if row and row.category in ("fs", "net") else {}
        ctx["arch"] = arch_name
        ctx["detail"] = f"non-native ABI ({arch_name}): denied"
        return alert(
            row or _UNKNOWN, nr, pid, ctx, category=row.category if row else "sys", name=name
        )

    def _answer(self, nid: int, pid: int, nr: int, args: tuple[int, ...], d: Decision) -> None:
        event = d.event
        if not self._valid(nid):
            # The caller died or was interrupted while we read its memory: what we read may
            # belong to someone else now. Record the call, not the context.
            if event is not None and isinstance(event, events.Call):
                event = events.Call(
                    type=event.type,
                    pid=pid,
                    category=event.category,
                    syscall=event.syscall,
                    syscall_no=nr,
                    denied=event.denied,
                    reason=event.reason,
                    decision=event.decision,
                    detail="caller gone before the answer",
                )
            if event is not None:
                self.writer.emit(event)
            return
        if d.action == DENY:
            held = self.held
            if (
                held is not None
                and d.errno == errno.EPERM
                and isinstance(event, events.Call)
                and event.type == events.ALERT
                and event.arch is None
            ):
                why = held.hold(nid, pid, nr, args, event)
                if not why:
                    return  # answered when the decision comes; policy.ask is written
                event = held.failed(event, why)
            self._send(nid, d.errno, 0)
        elif d.action == CONNECT and self.connector and isinstance(event, events.Call):
            done = self.connector.start(nid, pid, args[0] & 0xFFFFFFFF, event, d.plan)
            if done is None:
                return  # a thread connects; the answer and its event come then
            event = done
        elif d.action == SEND and self.connector:
            event = self.connector.send(nid, event, d.plan)  # read once, sent by us
        elif d.action == DONE:
            self._send(nid, d.errno, 0)  # we made the call ourselves: its result
        elif d.action == CONTINUE:
            self._send(nid, 0, _abi.USER_NOTIF_FLAG_CONTINUE)
        elif d.action == ATTEMPT and isinstance(event, events.Call):
            event = attempt(self, nid, pid, nr, args, event)
        elif d.action == GUARDED and isinstance(event, events.Call):
            event = guarded(self, nid, pid, nr, args, event, d.plan, d.errno)
        elif d.action == PERFORM and isinstance(event, events.Call):
            event = self._perform(nid, pid, nr, args, event)
        elif d.action == INJECT:
            flags = self._open_flags(nr, args)
            try:
                fd = self._inject(nid, pid, d.source, flags)
                detail = f"pseudo-device: supervisor opened {d.source}, installed as fd {fd}"
            except OSError as err:
                self._send(nid, err.errno or errno.EPERM, 0)
                detail = f"pseudo-device {d.source}: {os.strerror(err.errno or 0)}"
            if isinstance(event, events.Call):
                event = dataclasses.replace(event, detail=detail)
        if event is not None:
            self.writer.emit(event)

    def _perform(
        self, nid: int, pid: int, nr: int, args: tuple[int, ...], denied: events.Call
    ) -> events.Call:
        """A scoped metadata call: carried out by us on the object we pinned and checked, or
        denied with the alert `denied` when that object lies outside every scope."""
        try:
            err, real, scope, _ = carry_out(
                BY_NR[nr].name,
                pid,
                args,
                self.decoder.mem,
                self._scope_of,
                lambda: self._valid(nid),
            )
        except Outside as out:
            self._send(nid, errno.EPERM, 0)
            return dataclasses.replace(denied, detail=f"outside every write scope: {out.real}")
        except OSError as exc:
            err, real, scope = exc.errno or errno.EPERM, denied.path or "", None
        self._send(nid, err, 0)
        return dataclasses.replace(
            denied,
            type=events.FS_WRITE,
            reason=None,
            denied=None,
            decision="ALLOW",
            path=real,
            scope=scope,
            detail="performed by the supervisor"
            + (f": {errno.errorcode.get(err, err)}" if err else ""),
            result=result_of(err),
        )

    def _scope_of(self, real: str) -> str | None:
        return covering(self.scopes, real)

    def _exiting(self, pid: int) -> None:
        """A process is calling exit_group: its memory figures are final and still readable."""
        status = status_fields(pid, "VmHWM", "VmPeak", "NSpid")
        if self.policy.pidns and status.get("NSpid", "").split()[-1:] == ["1"]:
            return  # our PID-namespace init, not the target
        hwm = int(status.get("VmHWM", "0 kB").split()[0])
        peak = int(status.get("VmPeak", "0 kB").split()[0])
        self.max_rss_kb = max(self.max_rss_kb, hwm)
        self.max_vm_kb = max(self.max_vm_kb, peak)

    @staticmethod
    def _open_flags(nr: int, args: tuple[int, ...]) -> int:
        name = BY_NR[nr].name
        if name == "creat":
            return os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        if name == "open":
            return args[1] & 0xFFFFFFFF
        if name == "openat":
            return args[2] & 0xFFFFFFFF
        return os.O_WRONLY  # openat2: its flags are in memory; write-only is the safe reading

    # -- the stall guard ---------------------------------------------------------------------
    def _rescue(self, stuck: tuple[int, ...]) -> bool:
        """Answer the notification `stuck` has been on for too long, and retire its loop
        thread. False if it finished meanwhile."""
        # The loop thread holds the lock while it answers: a read that stalls *there* (an
        # on-behalf operation rereading the path) cannot be taken over safely; --timeout,
        # on the keeper's clock, still ends it.
        if not self._lock.acquire(timeout=0.01):
            return False
        try:
            if self._current is not stuck:
                return False
            self._generation += 1
            self._current = None
        finally:
            self._lock.release()
        self.stalls += 1
        self.decoder = Decoder()  # the stuck thread keeps the old one, buffer and all
        self.net.decoder = self.decoder
        nid, pid, nr, arch, args = stuck[0], stuck[1], stuck[3], stuck[4], stuck[6:]
        native = arch == _abi.AUDIT_ARCH_X86_64 and not nr & _abi.X32_SYSCALL_BIT
        row = BY_NR.get(nr, _UNKNOWN) if native else _UNKNOWN
        ctx: dict[str, object] = {
            "detail": f"{TIMED_OUT}: the target's memory did not answer within {READ_BOUND:g} s "
            "(a page it keeps from resolving); denied without its context"
        }
        for role in ("path", "path2"):
            if role in row.args:
                ctx[role] = TIMED_OUT
        self._answer(nid, pid, nr, args, alert(row, nr, pid, ctx, category=row.category))
        if self.stalls >= MAX_STALLS:
            raise RuntimeError(f"{self.stalls} reads of target memory stalled")
        return True

    def serve(
        self,
        extra: dict[int, Callable[[], bool]],
        next_due: Callable[[], float | None],
        on_due: Callable[[], None],
    ) -> None:
        """Serve until no task uses the filter. `extra`: other fds to watch (fd -> callback
        returning False at end of file); `next_due()`: the monotonic time at which `on_due`
        must run next (a timeout, a sample), or None.

        The loop runs in a thread of its own; this thread only watches that no notification
        takes longer than READ_BOUND (from when it first saw it: 1 to 1.5 s), checking every
        half of it (joins cost nothing)."""
        held = self.held
        if held is not None:
            extra = {**extra, held.fileno(): held.on_readable}
            next_due, on_due = _with_held(held, next_due, on_due)
        if self.connector is not None:
            extra = {**extra, self.connector.fileno(): self.connector.on_readable}
        try:
            self._guarded(extra, next_due, on_due)
        finally:
            if held is not None:
                held.close()

    def _guarded(
        self,
        extra: dict[int, Callable[[], bool]],
        next_due: Callable[[], float | None],
        on_due: Callable[[], None],
    ) -> None:
        while True:
            generation = self._generation
            loop = threading.Thread(
                target=self._loop_thread,
                args=(
                    generation,
                    functools.partial(self._loop, generation, extra, next_due, on_due),
                ),
                name="bubble-supervisor",
                daemon=True,  # a stuck one must not keep the process from exiting
            )
            loop.start()
            seen, since = None, 0.0
            while True:
                loop.join(READ_BOUND / 2)
                if not loop.is_alive():
                    if self._failure is not None:
                        raise self._failure
                    return
                current = self._current
                if current is None or current is not seen:
                    seen, since = current, time.monotonic()  # a new notification: clock it
                elif time.monotonic() - since >= READ_BOUND and self._rescue(current):
                    break  # start a new loop thread

    def _loop_thread(self, generation: int, loop: Callable[[], None]) -> None:
        try:
            loop()
        except BaseException as err:  # noqa: BLE001 - handed to the watching thread
            if generation == self._generation:
                self._failure = err

    def _loop(
        self,
        generation: int,
        extra: dict[int, Callable[[], bool]],
        next_due: Callable[[], float | None],
        on_due: Callable[[], None],
    ) -> None:
        poller = select.poll()
        poller.register(self.listener, select.POLLIN)
        for fd in extra:
            poller.register(fd, select.POLLIN)
        monotonic = time.monotonic
        while generation == self._generation:
            # Under a flood the next notification is usually already waiting: handle it
            # first and write events in batches; flush only before we would block, so a
            # quiet run still shows each event at once. What is due is checked every turn,
            # so a flood cannot starve --timeout.
            ready = poller.poll(0)
            due = next_due()
            if due is not None and monotonic() >= due:
                on_due()
                continue
            if not ready:
                self.writer.flush()
                wait = None if due is None else int((due - monotonic()) * 1000) + 1
                ready = poller.poll(wait)
                if not ready:
                    continue  # something is due: the top of the loop runs it
            for fd, mask in ready:
                if fd == self.listener:
                    if mask & select.POLLIN:
                        self.handle(generation)
                        if generation != self._generation:
                            return  # we stalled: a new loop thread serves now
                    elif mask & (select.POLLHUP | select.POLLERR):
                        self.writer.flush()
                        return
                else:
                    if mask & select.POLLNVAL:
                        poller.unregister(fd)
                        continue
                    if extra[fd]() is False:  # the callback saw end of file
                        poller.unregister(fd)


def _held_calls(sup: Supervisor, policy: Policy) -> HeldCalls | None:
    """The decision hook, if the run has one: `--decide CMD`, or the seed's
    SUPERVISOR_JSON_FD (an inherited socket, e.g. the orchestrator's for `ask`)."""
    shared = os.environ.get("SUPERVISOR_JSON_FD")
    if not policy.decide and (shared is None or not shared.isdigit()):
        return None
    # Only runs with a decision hook pay for these (and `json`): 2.4 ms of a cold start-up,
    # the least of 15 `-X importtime` runs on this (loaded) machine.
    from bubble.sandbox.decider import Decider
    from bubble.sandbox.held import HeldCalls

    if policy.decide:
        decider = Decider.start(policy.decide, policy.decide_timeout)
    else:
        assert shared is not None
        decider = Decider(int(shared), int(shared), policy.decide_timeout)
    return HeldCalls(sup, decider, "analyst" if policy.ask else "helper")


def _with_held(
    held: HeldCalls, next_due: Callable[[], float | None], on_due: Callable[[], None]
) -> tuple[Callable[[], float | None], Callable[[], None]]:
    """The session's due times merged with the held calls' deadlines."""

    def due() -> float | None:
        a, b = next_due(), held.next_due()
        return b if a is None else a if b is None else min(a, b)

    def run_due() -> None:
        b = held.next_due()
        if b is not None and time.monotonic() >= b:
            held.on_due()
        a = next_due()
        if a is not None and time.monotonic() >= a:
            on_due()

    return due, run_due
