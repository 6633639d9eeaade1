"""Calls held for a decision (DESIGN §2.8): asked, awaited without stopping the supervisor,
answered when the decision comes or the time runs out.

A held call is one the policy would deny with EPERM. It is logged at once as `policy.ask`;
its decision is logged as one more event. ALLOW is carried out so that nothing runs on memory
the target can still change (DESIGN §2.4):
- a call whose arguments are all registers (nothing read from memory decided it) CONTINUEs;
- a filesystem call the supervisor carries out itself (onbehalf.py), an open installing the
  descriptor it opened (ADDFD);
- anything else (a socket address, an exec's argv, ...) cannot be allowed safely here and is
  denied, and the event says so.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import time

from bubble import events
from bubble.sandbox.decider import Decider, Reply
from bubble.sandbox.onbehalf import Outside, Unsupported, carry_out
from bubble.sandbox.performed import result_of
from bubble.sandbox.syscalls import BY_NR

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from bubble.sandbox.supervisor import Supervisor

# Argument roles read from target memory: an ALLOW may not CONTINUE a call that has one.
MEMORY_ROLES = frozenset(
    {"path", "path2", "ltarget", "how", "xname", "mqname", "sockaddr", "buf", "msghdr",
     "mmsghdr", "argv"}
)  # fmt: skip
_REQUEST_SKIP = frozenset({"type", "pid", "reason", "denied", "decision", "ask_timeout_s"})


class HeldCalls:
    def __init__(self, sup: Supervisor, decider: Decider, decided_by: str) -> None:
        self.sup = sup
        self.decider = decider
        self.decided_by = decided_by
        self.calls: dict[int, tuple[int, int, tuple[int, ...], events.Call]] = {}

    def fileno(self) -> int:
        return self.decider.rfd

    def hold(self, nid: int, pid: int, nr: int, args: tuple[int, ...], alert: events.Call) -> str:
        """Ask about a call the policy would deny: '' when held, else why it could not be
        (the caller then denies it, failing closed)."""
        ask = dataclasses.replace(
            alert,
            type=events.ASK,
            reason=None,
            denied=None,
            ask_timeout_s=self.decider.timeout,
        )
        seq = self.sup.writer.emit(ask)
        request: dict[str, Any] = {"seq": seq, "pid": pid}
        for field in dataclasses.fields(alert):
            value = getattr(alert, field.name)
            if value is not None and field.name not in _REQUEST_SKIP:
                request[field.name] = value
        why = self.decider.ask(nid, request)
        if not why:
            self.calls[nid] = (pid, nr, args, alert)
        return why

    def next_due(self) -> float | None:
        return self.decider.next_due()

    def on_due(self) -> None:
        for nid in self.decider.expired(time.monotonic()):
            why = f"no decision within {self.decider.timeout:g} s"
            self._resolve(nid, Reply.failed(why))

    def on_readable(self) -> bool:
        replies, alive = self.decider.on_readable()
        for nid, reply in replies:
            self._resolve(nid, reply)
        return alive

    def close(self) -> None:
        for nid in list(self.calls):
            self._resolve(nid, Reply.failed("the run is ending"))
        self.decider.close()

    # -- answering -------------------------------------------------------------------------
    @staticmethod
    def failed(alert: events.Call, why: str) -> events.Call:
        return dataclasses.replace(alert, reason="fail-closed", detail=f"decision: {why}")

    def _resolve(self, nid: int, reply: Reply) -> None:
        held = self.calls.pop(nid, None)
        if held is None:
            return
        pid, nr, args, alert = held
        sup = self.sup
        if not sup.valid(nid):
            sup.writer.emit(dataclasses.replace(alert, detail="caller gone before the decision"))
            return

        if reply.failure:
            sup.send(nid, 0, errno.EPERM, 0)
            event = dataclasses.replace(
                self.failed(alert, reply.failure), decided_by=self.decided_by
            )
        elif reply.action == "DENY_ERRNO":
            sup.send(nid, 0, reply.errno, 0)
            name = errno.errorcode.get(reply.errno, str(reply.errno))
            event = dataclasses.replace(alert, denied=name, decided_by=self.decided_by)
        elif reply.action == "EMULATE_RET":
            sup.send(nid, reply.ret, reply.errno, 0)
            denied = errno.errorcode.get(reply.errno) if reply.errno else None
            event = dataclasses.replace(
                alert, reason="emulated", denied=denied, ret=reply.ret, decided_by=self.decided_by
            )
        elif reply.action == "QUARANTINE":
            sup.send(nid, 0, errno.EPERM, 0)
            event = dataclasses.replace(alert, reason="quarantine", decided_by=self.decided_by)
        else:
            event = self._allow(nid, pid, nr, args, alert)
        sup.writer.emit(event)

    def _allow(
        self, nid: int, pid: int, nr: int, args: tuple[int, ...], alert: events.Call
    ) -> events.Call:
        sup = self.sup
        row = BY_NR[nr]

        allowed = dataclasses.replace(
            alert,
            type=events.ALLOWED,
            reason=None,
            denied=None,
            decision="ALLOW",
            decided_by=self.decided_by,
        )
        if not MEMORY_ROLES.intersection(row.args):
            sup.send(nid, 0, 0, 1)  # USER_NOTIF_FLAG_CONTINUE: registers only, nothing to swap
            return dataclasses.replace(allowed, detail="allowed: its arguments are registers")
        if row.category == "fs":
            try:
                err, real, _, fd = carry_out(
                    row.name, pid, args, sup.decoder.mem, None, lambda: sup.valid(nid)
                )
            except (Unsupported, Outside):  # Outside cannot happen: no check was given
                pass
            except OSError as exc:
                err = exc.errno or errno.EPERM
                sup.send(nid, 0, err, 0)
                name = errno.errorcode.get(err, str(err))
                return dataclasses.replace(
                    allowed, detail=f"carried out by the supervisor: {name}", result=result_of(err)
                )
            else:
                detail = "carried out by the supervisor"
                if fd >= 0:
                    try:
                        installed = sup.install(nid, fd, nr, args)
                        detail += f", installed as fd {installed}"
                    except OSError as exc:
                        err = exc.errno or errno.EPERM
                        sup.send(nid, 0, err, 0)
                        detail += ", not installed"
                    finally:
                        os.close(fd)
                else:
                    sup.send(nid, 0, err, 0)
                if err:
                    detail += f": {errno.errorcode.get(err, err)}"
                return dataclasses.replace(allowed, path=real, detail=detail, result=result_of(err))
        sup.send(nid, 0, errno.EPERM, 0)
        return dataclasses.replace(
            alert,
            reason="fail-closed",
            detail=f"decision: ALLOW cannot be carried out safely for {row.name}: denied",
            decided_by=self.decided_by,
        )
