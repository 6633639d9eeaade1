"""The seed's decision hook: a helper that answers held calls (DESIGN §2.8).

Protocol (one JSON object a line, both ways). Bubble writes a request for every call the
policy would deny: `{"id": N, "seq": S, "syscall": "openat", "syscall_no": 257, "pid": P, ...
decoded fields (path, flags, peer, port, ...)}` (`seq` is the `policy.ask` event's). The
helper replies `{"id": N, "action": A}` with A one of
  ALLOW                      carried out safely (never a bare CONTINUE on memory: see
                             supervisor.py), or denied when that cannot be done
  DENY_ERRNO + "errno"       deny with that errno (a number or a name such as "EACCES")
  EMULATE_RET + "ret"        the call is not executed and returns `ret`
  QUARANTINE                 deny with EPERM and alert; the program keeps running
`id` may be left out: the reply then answers the oldest open request. A reply that is late
(`--decide-timeout`), malformed, unknown, or a helper that dies or stops reading: EPERM, and
the event says why (fail closed). The supervisor keeps serving other calls while one waits.

Transport: `--decide CMD` starts CMD (through /bin/sh) with pipes on its stdin/stdout;
`SUPERVISOR_JSON_FD=N` in Bubble's environment uses the inherited descriptor N (a socket)
both ways, as the seed did. Helper output is hostile too: lines are bounded (64 KiB).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time

from bubble.sandbox._libc import pidfd_open, pidfd_send_signal

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

ACTIONS = ("ALLOW", "DENY_ERRNO", "EMULATE_RET", "QUARANTINE")
MAX_LINE = 1 << 16
MAX_PENDING = 4096  # requests waiting at once; beyond, new ones fail closed at once


class Reply:
    """A helper's answer to one request, or why there is none (`failure`)."""

    __slots__ = ("action", "errno", "failure", "ret")

    def __init__(self, action: str = "", err: int = 0, ret: int = 0, failure: str = "") -> None:
        self.action = action
        self.errno = err
        self.ret = ret
        self.failure = failure

    @classmethod
    def failed(cls, why: str) -> Reply:
        return cls(failure=why)


def parse_reply(obj: object) -> Reply:
    """A reply object -> Reply (failure set when it cannot be honoured)."""
    if not isinstance(obj, dict):
        return Reply.failed("the reply is not a JSON object")
    action = obj.get("action", obj.get("decision"))
    if action not in ACTIONS:
        return Reply.failed(f"unknown action {str(action)[:40]!r}")
    if action == "DENY_ERRNO":
        value = obj.get("errno")
        if isinstance(value, str):
            code = getattr(errno, value.upper(), None)
        elif isinstance(value, int) and not isinstance(value, bool):
            code = value
        else:
            code = None
        if not isinstance(code, int) or not 0 < code < 4096:
            return Reply.failed(f"DENY_ERRNO with a bad errno {str(value)[:40]!r}")
        return Reply(action, err=code)
    if action == "EMULATE_RET":
        ret = obj.get("ret")
        if not isinstance(ret, int) or isinstance(ret, bool) or not -(1 << 63) <= ret < 1 << 63:
            return Reply.failed(f"EMULATE_RET with a bad ret {str(ret)[:40]!r}")
        if -4095 <= ret < 0:
            return Reply(action, err=-ret)  # the kernel reads a small negative value as an errno
        return Reply(action, ret=ret)
    return Reply(action)


class Decider:
    """Requests out, replies in, deadlines kept. Owned by the supervisor's single thread."""

    def __init__(self, rfd: int, wfd: int, timeout: float, pidfd: int = -1) -> None:
        self.rfd, self.wfd, self.timeout, self.pidfd = rfd, wfd, timeout, pidfd
        os.set_blocking(rfd, False)
        if wfd != rfd:
            os.set_blocking(wfd, False)
        self.pending: dict[int, float] = {}  # request id -> deadline (insertion = age order)
        self.buf = b""
        self.gone = ""  # why the helper can no longer answer

    @classmethod
    def start(cls, command: str, timeout: float) -> Decider:
        """Start `command` with pipes on its stdin/stdout (its stderr is ours)."""
        to_r, to_w = os.pipe2(os.O_CLOEXEC)
        from_r, from_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:  # the helper: the operator's own program, not sandboxed
            try:
                os.dup2(to_r, 0)
                os.dup2(from_w, 1)
                os.closerange(3, 1 << 20)
                os.execv("/bin/sh", ["/bin/sh", "-c", command])
            finally:
                os._exit(127)
        os.close(to_r)
        os.close(from_w)
        # A pidfd, not the pid: the session reaps any child of ours, so the pid may be reused
        # by the time we end the helper.
        return cls(from_r, to_w, timeout, pidfd_open(pid))

    def ask(self, key: int, request: dict[str, Any]) -> str:
        """Send one request; '' when sent, else why it could not be (fail closed)."""
        if self.gone:
            return self.gone
        if len(self.pending) >= MAX_PENDING:
            return f"{MAX_PENDING} requests already wait for the helper"
        line = json.dumps({"id": key, **request}, separators=(",", ":")) + "\n"
        try:
            written = os.write(self.wfd, line.encode())
        except BlockingIOError:
            return "the decision helper is not reading"
        except OSError as err:
            self.gone = f"the decision helper is gone ({os.strerror(err.errno or 0)})"
            return self.gone
        if written < len(line):
            # A torn request would desynchronise the stream: treat the helper as gone.
            self.gone = "the decision helper stopped reading mid-request"
            return self.gone
        self.pending[key] = time.monotonic() + self.timeout
        return ""

    def next_due(self) -> float | None:
        return next(iter(self.pending.values()), None)

    def expired(self, now: float) -> list[int]:
        out = [k for k, due in self.pending.items() if due <= now]
        for key in out:
            del self.pending[key]
        return out

    def on_readable(self) -> tuple[list[tuple[int, Reply]], bool]:
        """Replies that arrived ([(request id, reply)]), and False at end of file (then every
        open request is answered with a failure)."""
        try:
            chunk = os.read(self.rfd, MAX_LINE)
        except BlockingIOError:
            return [], True
        except OSError as err:
            chunk, self.gone = b"", f"the decision helper failed ({os.strerror(err.errno or 0)})"
        done: list[tuple[int, Reply]] = []
        if not chunk:
            self.gone = self.gone or "the decision helper exited"
            done += [(k, Reply.failed(self.gone)) for k in self.pending]
            self.pending.clear()
            return done, False
        self.buf += chunk
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            if line.strip():
                done.extend(self._line(line))
        if len(self.buf) > MAX_LINE:
            self.buf = b""
            done.extend(self._answer_oldest(Reply.failed("a reply line is too long")))
        return done, True

    def _line(self, line: bytes) -> list[tuple[int, Reply]]:
        try:
            obj = json.loads(line)
        except ValueError:
            return self._answer_oldest(Reply.failed("the reply is not JSON"))
        key = obj.get("id") if isinstance(obj, dict) else None
        if key is None:
            return self._answer_oldest(parse_reply(obj))
        if not isinstance(key, int) or key not in self.pending:
            return []  # a late reply to a request already failed closed, or a stray one
        del self.pending[key]
        return [(key, parse_reply(obj))]

    def _answer_oldest(self, reply: Reply) -> list[tuple[int, Reply]]:
        if not self.pending:
            return []
        key = next(iter(self.pending))
        del self.pending[key]
        return [(key, reply)]

    def close(self) -> None:
        for fd in {self.rfd, self.wfd}:
            with contextlib.suppress(OSError):
                os.close(fd)
        if self.pidfd >= 0:
            import signal

            with contextlib.suppress(OSError):  # already gone
                pidfd_send_signal(self.pidfd, signal.SIGKILL)
            os.close(self.pidfd)
