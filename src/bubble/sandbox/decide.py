"""Policy decisions: (syscall row, decoded fields, policy) -> what to answer and what to log.

Deny is always safe. Nothing here allows a call because of what target memory said, except
where the policy allows the whole category anyway (then memory only feeds the log). Pseudo-device
opens are answered by *injecting a descriptor the supervisor opened itself* (ADDFD), so a target
that rewrites the path after our check still only gets /dev/null.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

from bubble import events
from bubble.policy import Policy
from bubble.sandbox.decode import WRITE_INTENT
from bubble.sandbox.onbehalf import CALLS as CARRIED
from bubble.sandbox.onbehalf import SCOPED as PERFORMED
from bubble.sandbox.procmem import status_kb
from bubble.sandbox.syscalls import ADMIN_BY_KIND, DENIED_IOCTLS, TTY_IOCTLS, Syscall
from bubble.scopes import covering

TYPE_CHECKING = False  # `typing` costs start-up time; mypy still reads this block
if TYPE_CHECKING:
    from typing import Any

DENY = "deny"  # answer -errno
CONTINUE = "continue"  # let the kernel run the call
INJECT = "inject"  # open `source` ourselves and hand the fd over with ADDFD|SEND
DONE = "done"  # the supervisor performed the call itself: answer with -errno (0: success)
CONNECT = "connect"  # a connect scope allows it: connector.py connects from the host's network
PERFORM = "perform"  # carry the call out ourselves (sandbox/onbehalf.py); event: the alert if not
SEND = "send"  # a send read once, made by the supervisor (datagram.py, streamsend.py): `plan`
ATTEMPT = "attempt"  # an allowed call: carry it out ourselves to learn its result, else CONTINUE
GUARDED = "guarded"  # under the layer, no Landlock right: carry it out on a layer object, else deny

# Write-opens that must keep working under --deny-fs=1 (DESIGN §2.3). Values: what we inject.
PSEUDO_DEVICES = {
    "/dev/null": "/dev/null",
    "/dev/zero": "/dev/zero",
    "/dev/full": "/dev/full",
    "/dev/tty": "/dev/tty",
    "/dev/stdout": "fd:1",
    "/dev/stderr": "fd:2",
    "/dev/fd/1": "fd:1",
    "/dev/fd/2": "fd:2",
    "/proc/self/fd/1": "fd:1",
    "/proc/self/fd/2": "fd:2",
    "/proc/thread-self/fd/1": "fd:1",
    "/proc/thread-self/fd/2": "fd:2",
}
_OPENS = frozenset({"open", "openat", "creat", "openat2"})
# Calls whose every effect Landlock re-checks in the kernel (with REFER and TRUNCATE handled),
# so a write scope may CONTINUE them on a path read from memory: a path swapped after our check
# fails there. chmod and the times calls have no Landlock right: the supervisor performs
# them (PERFORM). chown, xattrs and ioctls are never scoped.
SCOPED_CALLS = _OPENS | frozenset(
    {
        "unlink", "unlinkat", "rmdir", "rename", "renameat", "renameat2", "mkdir", "mkdirat",
        "mknod", "mknodat", "link", "linkat", "symlink", "symlinkat", "truncate",
    }
)  # fmt: skip


_EPERM = errno.EPERM  # inside Decision, `errno` names the field


@dataclass(frozen=True, slots=True)
class Decision:
    """What the supervisor answers, and the event that records it (None: internal call).
    Built by the named constructors below, one per answer, so an action never travels with
    fields it does not use (an errno on a CONTINUE, a source on a DENY)."""

    action: str
    event: events.Event | None
    errno: int = 0
    source: str = ""  # for INJECT: a path to open, or "fd:N" to duplicate from the target
    # SEND: datagram.Plan or streamsend.StreamPlan; CONNECT: a socket of the wall; GUARDED: the
    # alert logged when the call is refused.
    plan: Any = None

    @classmethod
    def deny(cls, event: events.Event | None, err: int = _EPERM) -> Decision:
        """Answer -err; the call never runs."""
        if err <= 0:
            raise ValueError(f"a deny needs a positive errno, not {err}")
        return cls(DENY, event, err)

    @classmethod
    def cont(cls, event: events.Event | None = None) -> Decision:
        """Let the kernel run the call: only when nothing read from memory decided it, or
        the kernel re-checks what memory says (Landlock, the network wall)."""
        return cls(CONTINUE, event)

    @classmethod
    def inject(cls, source: str, event: events.Event | None) -> Decision:
        """Answer with a descriptor the supervisor opened itself from `source`."""
        if not source:
            raise ValueError("an inject needs a source")
        return cls(INJECT, event, source=source)

    @classmethod
    def done(cls, event: events.Event | None, err: int) -> Decision:
        """The supervisor already performed the call: answer -err (0: success)."""
        if err < 0:
            raise ValueError(f"errno must be 0 or positive, not {err}")
        return cls(DONE, event, err)

    @classmethod
    def connect(cls, event: events.Event, walled: Any = None) -> Decision:
        """A connect scope allows it: connector.py connects from the host's network; or,
        with `walled` (the supervisor's checked copy of a socket inside the wall), that
        socket is connected by the supervisor and stays inside the wall."""
        return cls(CONNECT, event, plan=walled)

    @classmethod
    def send(cls, event: events.Event | None, plan: Any) -> Decision:
        """A send read once from memory, carried out by the supervisor as `plan` says
        (datagram.Plan, streamsend.StreamPlan)."""
        if plan is None:
            raise ValueError("a send needs a plan")
        return cls(SEND, event, plan=plan)

    @classmethod
    def attempt(cls, allowed: events.Event) -> Decision:
        """An allowed fs call: carried out by the supervisor exactly as the kernel would for
        the caller, so the event can say what happened (`result`); where that cannot be done
        exactly (onbehalf.Inexact), a CONTINUE with `allowed` as it is."""
        return cls(ATTEMPT, allowed)

    @classmethod
    def guarded(cls, allowed: events.Event, denied: Decision) -> Decision:
        """Under --fs-overlay, a call no Landlock right covers (chmod, chown, times, xattrs,
        inode flags): carried out by the supervisor only when the object it pins lies in the
        layer's own filesystems; anything else is answered as `denied` says (an alert)."""
        if denied.action != DENY:
            raise ValueError("a guarded call falls back to a deny")
        return cls(GUARDED, allowed, denied.errno, plan=denied.event)

    @classmethod
    def perform(cls, denied: Decision) -> Decision:
        """Carry the call out on the caller's behalf (onbehalf.py); if that is refused,
        answer as `denied` (an alert) says."""
        if denied.action != DENY:
            raise ValueError("perform falls back to a deny")
        return cls(PERFORM, denied.event, denied.errno)


def _call(
    kind: str, row_name: str, nr: int, pid: int, category: str, ctx: dict[str, Any], **extra: Any
) -> events.Call:
    return events.Call(
        type=kind, pid=pid, category=category, syscall=row_name, syscall_no=nr, **ctx, **extra
    )


def alert(
    row: Syscall,
    nr: int,
    pid: int,
    ctx: dict[str, Any],
    err: int = errno.EPERM,
    category: str | None = None,
    name: str | None = None,
) -> Decision:
    """Deny with `err` and log a policy.alert."""
    event = _call(
        events.ALERT,
        name or row.name,
        nr,
        pid,
        category or row.category,
        ctx,
        reason="errno",
        denied=errno.errorcode[err],
    )
    return Decision.deny(event, err)


def observe(kind: str, row: Syscall, nr: int, pid: int, ctx: dict[str, Any]) -> Decision:
    """Let the call run and log it as `kind` (observation only: DESIGN §2.4)."""
    return Decision.cont(_call(kind, row.name, nr, pid, row.category, ctx, decision="ALLOW"))


def pseudo_device(pid: int, path: str | None) -> str | None:
    """The injection source if `path` names a pseudo-device the target may open for writing."""
    if path is None:
        return None
    source = PSEUDO_DEVICES.get(path)
    if source is None and path.startswith("/proc/") and path[-5:] in ("/fd/1", "/fd/2"):
        # /proc/<pid>/fd/N names the caller's own stdout/stderr when <pid> is its thread or
        # its process (notifications carry the thread id).
        owner = path[6:-5]
        if owner == str(pid) or owner == str(status_kb(pid, "Tgid")):
            source = "fd:" + path[-1]
    return source


def decide_fs(
    row: Syscall,
    nr: int,
    pid: int,
    ctx: dict[str, Any],
    policy: Policy,
    how_flags: int | None,
) -> Decision:
    if (
        row.name == "openat2"
        and not policy.writes_allowed
        and how_flags is not None
        and not how_flags & WRITE_INTENT
    ):
        # We cannot CONTINUE on flags read from memory: make the caller use openat.
        return alert(row, nr, pid, {**ctx, "detail": "read-only openat2: use openat"}, errno.ENOSYS)
    allowed = _call(events.FS_WRITE, row.name, nr, pid, "fs", ctx, decision="ALLOW")
    layer = policy.fs_overlay is not None
    if row.name in _MKDIRS and policy.deny_fs and not layer and _exists(pid, ctx.get("path")):
        # `mkdir -p` tries every component from the root: answer like the kernel (a deny, so
        # safe whatever the path says by now) and keep it out of the violations.
        return Decision.deny(_call(events.FS_NOOP, row.name, nr, pid, "fs", ctx), errno.EEXIST)
    if not policy.deny_fs and not layer:
        return Decision.attempt(allowed) if row.name in CARRIED else Decision.cont(allowed)
    if policy.write and row.name in SCOPED_CALLS:  # never with a layer (Policy refuses both)
        scope = _in_scope(row, ctx, policy.write)
        if scope is not None:
            return Decision.cont(
                _call(events.FS_WRITE, row.name, nr, pid, "fs", ctx, decision="ALLOW", scope=scope),
            )
    if policy.write and row.name in PERFORMED:
        # No Landlock right covers these: the supervisor pins the object and checks it.
        denied = alert(row, nr, pid, ctx, category="fs")
        return Decision.perform(denied)
    if row.name in _OPENS:
        # Also under the layer: stdout/stderr opened before the switch live outside it,
        # where Landlock refuses a reopen for writing; the supervisor hands over its own.
        source = pseudo_device(pid, ctx.get("path"))
        if source is not None:
            return Decision.inject(source, allowed)
    if layer and row.name in UNGUARDED:
        # Landlock has no right for these and the layer does not cover objects from outside
        # it: a host file open on stdout (`chmod 777 /proc/self/fd/1` changed the host
        # file's mode) or a host device node bound into the layer's /dev (`chmod 600
        # /dev/null` changed the host's). Never CONTINUE them: carried out on an object of
        # the layer's own filesystems, denied otherwise.
        return Decision.guarded(allowed, alert(row, nr, pid, ctx, category="fs"))
    if layer:
        # The kernel is the wall: the mount namespace and Landlock re-check the real
        # operation, whatever memory said (DESIGN §2.4), so observing is safe; what we carry
        # out ourselves is resolved in the caller's root and its result reported.
        return Decision.attempt(allowed) if row.name in CARRIED else Decision.cont(allowed)
    return alert(row, nr, pid, ctx, category="fs")


_MKDIRS = frozenset({"mkdir", "mkdirat"})
# Under the layer, the calls whose effect neither the mount namespace nor Landlock bounds to
# the layer: they change an inode wherever it lives. (ioctl reaches decide_fs for inode flags.)
UNGUARDED = frozenset(
    {
        "chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown", "lchown", "fchownat",
        "utime", "utimes", "futimesat", "utimensat", "setxattr", "lsetxattr", "fsetxattr",
        "setxattrat", "removexattr", "lremovexattr", "fremovexattr", "removexattrat",
        "file_setattr", "ioctl",
    }
)  # fmt: skip


def _exists(pid: int, path: object) -> bool:
    """Whether `path` (absolute, as the caller sees it) names something that exists."""
    return (
        isinstance(path, str)
        and path.startswith("/")
        and os.path.lexists(f"/proc/{pid}/root{path}")
    )


def _in_scope(row: Syscall, ctx: dict[str, Any], write: tuple[str, ...]) -> str | None:
    """The scope holding every path the call names (rename's and link's both), or None."""
    scope = None
    for role in ("path", "path2"):
        if role not in row.args:
            continue  # symlink's path2 is the link's text, not a place written
        path = ctx.get(role)
        if not isinstance(path, str) or not path.startswith("/"):
            return None
        scope = covering(write, path)
        if scope is None:
            return None
    return scope


def decide_ioctl(
    row: Syscall, nr: int, pid: int, ctx: dict[str, Any], policy: Policy, cmd: int
) -> Decision:
    """Decided on the request register alone (no memory, no race)."""
    if cmd in TTY_IOCTLS:
        return alert(row, nr, pid, ctx)
    name = DENIED_IOCTLS.get(cmd)
    if name is not None:
        return alert(row, nr, pid, {**ctx, "detail": f"{name} ({cmd:#x})"})
    family = ADMIN_BY_KIND.get(cmd >> 8 & 0xFF)
    if family is None:
        # Inode flags and the like: a filesystem mutation.
        return decide_fs(row, nr, pid, ctx, policy, None)
    if cmd in family.reads:
        return Decision.cont()  # reports state only
    detail = f"{family.name} ioctl {cmd:#x}: {family.note}"
    return alert(row, nr, pid, {**ctx, "detail": detail})


def decide_adjtime(
    row: Syscall, nr: int, pid: int, ctx: dict[str, Any], policy: Policy, modes: int | None
) -> Decision:
    """adjtimex/clock_adjtime: a read (modes 0) continues when the target cannot hold
    CAP_SYS_TIME, since then the kernel refuses any setting itself, whatever the target
    writes into `modes` after our look; with --keep-caps every call is denied and logged."""
    if modes == 0 and not policy.keep_caps:
        return Decision.cont()
    return alert(row, nr, pid, ctx)


def decide(
    row: Syscall,
    nr: int,
    pid: int,
    ctx: dict[str, Any],
    policy: Policy,
    args: tuple[int, ...],
    how_flags: int | None = None,
) -> Decision:
    """The answer for one notification of a native call described by `row`, with registers
    `args` and the fields decoded from them in `ctx`. Network calls: `netpolicy`."""
    category = row.category
    if category == "fs":
        return decide_fs(row, nr, pid, ctx, policy, how_flags)
    if category == "exec":
        # The parent from /proc (one small read per exec, not per call): the report's tree
        # is built from spawn and end events alone.
        spawn = events.Spawn(
            pid=pid,
            ppid=status_kb(pid, "PPid"),
            exe=ctx.get("path", ""),
            argv=ctx.get("argv"),
            exe_hex=ctx.get("path_hex"),
            argv_hex=ctx.get("argv_hex"),
            syscall=row.name,
            syscall_no=nr,
        )
        return Decision.cont(spawn)
    if row.name == "ioctl":
        return decide_ioctl(row, nr, pid, ctx, policy, args[1] & 0xFFFFFFFF)
    if row.rule.startswith("adjtime:"):
        return decide_adjtime(row, nr, pid, ctx, policy, how_flags)
    if row.rule == "enosys":
        return alert(row, nr, pid, ctx, errno.ENOSYS)
    return alert(row, nr, pid, ctx)
