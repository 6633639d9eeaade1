"""Policy decisions: (syscall row, decoded fields, policy) -> what to answer and what to log.

Deny is always safe. Nothing here allows a call because of what target memory said, except
where the policy allows the whole category anyway (then memory only feeds the log). Pseudo-device
opens are answered by *injecting a descriptor the supervisor opened itself* (ADDFD), so a target
that rewrites the path after our check still only gets /dev/null.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from bubble import events
from bubble.policy import Policy
from bubble.sandbox.decode import WRITE_INTENT
from bubble.sandbox.procmem import status_kb
from bubble.sandbox.syscalls import TTY_IOCTLS, Syscall

TYPE_CHECKING = False  # `typing` costs start-up time; mypy still reads this block
if TYPE_CHECKING:
    from typing import Any

DENY = "deny"  # answer -errno
CONTINUE = "continue"  # let the kernel run the call
INJECT = "inject"  # open `source` ourselves and hand the fd over with ADDFD|SEND

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


@dataclass(frozen=True, slots=True)
class Decision:
    """What the supervisor answers, and the event that records it (None: internal call)."""

    action: str
    event: events.Event | None
    errno: int = 0
    source: str = ""  # for INJECT: a path to open, or "fd:N" to duplicate from the target


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
    return Decision(DENY, event, err)


def observe(kind: str, row: Syscall, nr: int, pid: int, ctx: dict[str, Any]) -> Decision:
    """Let the call run and log it as `kind` (observation only: DESIGN §2.4)."""
    return Decision(CONTINUE, _call(kind, row.name, nr, pid, row.category, ctx, decision="ALLOW"))


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
        and policy.deny_fs
        and how_flags is not None
        and not how_flags & WRITE_INTENT
    ):
        # We cannot CONTINUE on flags read from memory: make the caller use openat.
        return alert(row, nr, pid, {**ctx, "detail": "read-only openat2: use openat"}, errno.ENOSYS)
    if not policy.deny_fs:
        return Decision(
            CONTINUE, _call(events.FS_WRITE, row.name, nr, pid, "fs", ctx, decision="ALLOW")
        )
    if row.name in _OPENS:
        source = pseudo_device(pid, ctx.get("path"))
        if source is not None:
            return Decision(
                INJECT,
                _call(events.FS_WRITE, row.name, nr, pid, "fs", ctx, decision="ALLOW"),
                source=source,
            )
    return alert(row, nr, pid, ctx, category="fs")


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
        argv = ctx.pop("argv", None)
        exe = ctx.get("path", "")
        return Decision(
            CONTINUE, events.Spawn(pid=pid, exe=exe, argv=argv, syscall=row.name, syscall_no=nr)
        )
    if row.name == "ioctl" and args[1] & 0xFFFFFFFF not in TTY_IOCTLS:
        # Decided on the request register: inode flags are a filesystem mutation.
        return decide_fs(row, nr, pid, ctx, policy, None)
    if row.rule == "enosys":
        return alert(row, nr, pid, ctx, errno.ENOSYS)
    return alert(row, nr, pid, ctx)
