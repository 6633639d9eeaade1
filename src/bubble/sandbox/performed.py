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
from bubble.sandbox.resolve import Inexact
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
