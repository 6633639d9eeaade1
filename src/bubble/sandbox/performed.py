"""An allowed filesystem call carried out by the supervisor, so its event says what happened.

Under `--deny-fs=0` and `--fs-overlay` the policy lets fs calls through, and a seccomp
CONTINUE never tells the supervisor how they ended: a failed `fchmodat /etc/passwd` looked
like a success. So the calls onbehalf.py can carry out exactly as the kernel would for the
caller (its root, its identity, its umask) are carried out by the supervisor, answered with
their result, and logged with `result` (0 or the errno name). Anything it cannot reproduce
exactly (onbehalf.Inexact, Unsupported) is left to the kernel as before, and the event has no
`result`: never a result we did not observe.
"""

from __future__ import annotations

import dataclasses
import errno
import os

from bubble import events
from bubble.sandbox import _abi
from bubble.sandbox.onbehalf import Outside, Unsupported, carry_out
from bubble.sandbox.resolve import Inexact, identity
from bubble.sandbox.syscalls import BY_NR

TYPE_CHECKING = False
if TYPE_CHECKING:
    from bubble.sandbox.supervisor import Supervisor


def result_of(err: int) -> int | str:
    """The `result` field: 0, or the errno's name like `denied` (EPERM)."""
    return errno.errorcode.get(err, str(err)) if err else 0


def attempt(
    sup: Supervisor, nid: int, pid: int, nr: int, args: tuple[int, ...], allowed: events.Call
) -> events.Call:
    """Carry out allowed call `nid` and answer it; the event with its `result`, or `allowed`
    as it is after a CONTINUE."""
    try:
        err, _real, _, fd = carry_out(
            BY_NR[nr].name, pid, args, sup.decoder.mem, None, lambda: sup.valid(nid), exact=True
        )
    except (Inexact, Unsupported, Outside):  # Outside cannot happen: no check was given
        sup.send(nid, 0, 0, _abi.USER_NOTIF_FLAG_CONTINUE)
        return allowed
    except OSError as exc:  # the caller is gone (ESRCH) or its memory unreadable (EFAULT)
        if exc.errno == errno.ESRCH:  # nothing was done: let the kernel answer, if anyone
            sup.send(nid, 0, 0, _abi.USER_NOTIF_FLAG_CONTINUE)
            return allowed
        err = exc.errno or errno.EPERM
        sup.send(nid, 0, err, 0)
        return dataclasses.replace(allowed, result=result_of(err))
    if fd >= 0:
        try:
            sup.install(nid, fd, nr, args)
        except OSError as exc:
            # The descriptor could not go in (EMFILE, the caller gone): what the caller got.
            err = exc.errno or errno.EPERM
            sup.send(nid, 0, err, 0)
        finally:
            os.close(fd)
    else:
        sup.send(nid, 0, err, 0)
    return dataclasses.replace(allowed, result=result_of(err))


def layer_mounts(pid: int) -> frozenset[int]:
    """The mount ids of the filesystems the run's layer made (its overlays and tmpfs): the
    mounts in the caller's namespace whose device the host's namespace does not have. A
    host device node or directory bound into the layer keeps the host's device: excluded."""
    host = {line.split(" ", 3)[2] for line in _lines("/proc/self/mountinfo")}
    return frozenset(
        int(fields[0])
        for fields in (line.split(" ", 3) for line in _lines(f"/proc/{pid}/mountinfo"))
        if fields[2] not in host
    )


def _lines(path: str) -> list[str]:
    with open(path, encoding="utf-8", errors="surrogateescape") as fh:
        return fh.read().splitlines()


def guarded(
    sup: Supervisor,
    nid: int,
    pid: int,
    nr: int,
    args: tuple[int, ...],
    allowed: events.Call,
    denied: events.Call,
    err: int,
) -> events.Call:
    """Carry out a call no Landlock right covers, under the layer, only on an object of the
    layer's own filesystems (checked on the descriptor we pinned, so a swap after our read
    changes nothing); otherwise deny it with `err` and log `denied`. Never a CONTINUE."""
    if sup.layer_mounts is None:
        try:
            sup.layer_mounts = layer_mounts(pid)
        except OSError:
            sup.send(nid, 0, err, 0)
            return denied
    mounts = sup.layer_mounts

    def inside(fd: int) -> bool:
        has_mnt, _, _, _, mnt = identity(fd)
        return bool(has_mnt) and mnt in mounts

    try:
        done, _real, _, _fd = carry_out(
            BY_NR[nr].name, pid, args, sup.decoder.mem, None, lambda: sup.valid(nid), True, inside
        )
    except Inexact:
        if os.geteuid() != 0:
            # An unprivileged launcher's target is root of a user namespace that maps only the
            # operator: a non-root supervisor cannot take its capabilities to carry the call
            # out, and denying would break `touch` and `chmod` on the layer's own files. The
            # kernel runs it: the only host inodes it can then change are the operator's own
            # (its output files on stdout/stderr); root's, such as the /dev nodes bound into
            # the layer, stay out of reach (docs/security.md).
            sup.send(nid, 0, 0, _abi.USER_NOTIF_FLAG_CONTINUE)
            return allowed
        sup.send(nid, 0, err, 0)
        return denied
    except (Unsupported, Outside, OSError):
        sup.send(nid, 0, err, 0)
        return denied
    sup.send(nid, 0, done, 0)  # object calls only (`inside` refuses the rest): no descriptor
    return dataclasses.replace(allowed, result=result_of(done))
