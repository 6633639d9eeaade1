"""The messages the child, the keeper and our PID-namespace init send to the supervisor.

One line each, `KIND FIELD...`, on pipes only Bubble's own processes hold (the target's copy is
closed before exec). Free text (a cwd, an error message) travels hex-encoded, so a newline or
a non-UTF-8 byte in it cannot split or forge a message. Typed here, in one place, instead of
three ad-hoc text protocols.
"""

from __future__ import annotations

import os

from bubble.sandbox.record import Record


class Ready(Record):
    """The child loaded the filter: the listener's fd number in the child, whether the kernel
    has WAIT_KILLABLE_RECV, the directory the target starts in, and (--fs-overlay) the fd
    number of the layer's tmpfs in the child for the parent to take, else -1."""

    __slots__ = ("cwd", "killable", "layer", "listener")
    listener: int
    killable: bool
    cwd: str
    layer: int

    def __init__(self, listener: int, killable: bool, cwd: str, layer: int = -1) -> None:
        self._set(listener=listener, killable=killable, cwd=cwd, layer=layer)


class Failed(Record):
    """The child could not start the target: exit status (125/126/127) and why."""

    __slots__ = ("code", "message")
    code: int
    message: str

    def __init__(self, code: int, message: str) -> None:
        self._set(code=code, message=message)


class InitStatus(Record):
    """Our PID-namespace init reaped the target: its raw wait status."""

    __slots__ = ("status",)
    status: int

    def __init__(self, status: int) -> None:
        self._set(status=status)


class Forked(Record):
    """The keeper forked the target."""

    __slots__ = ("pid",)
    pid: int

    def __init__(self, pid: int) -> None:
        self._set(pid=pid)


class Reaped(Record):
    """The keeper reaped the target: raw wait status and wait4's ru_maxrss (kB)."""

    __slots__ = ("maxrss", "status")
    status: int
    maxrss: int

    def __init__(self, status: int, maxrss: int) -> None:
        self._set(status=status, maxrss=maxrss)


class TimedOut(Record):
    """The keeper's own --timeout clock ran out and it killed its subtree."""

    __slots__ = ()


Message = Ready | Failed | InitStatus | Forked | Reaped | TimedOut

_KINDS: dict[str, type] = {
    "ready": Ready,
    "failed": Failed,
    "init-status": InitStatus,
    "forked": Forked,
    "reaped": Reaped,
    "timed-out": TimedOut,
}
_NAMES = {cls: name for name, cls in _KINDS.items()}


def _text(value: str) -> str:
    return value.encode("utf-8", "surrogateescape").hex() or "-"


def _untext(value: str) -> str:
    return "" if value == "-" else bytes.fromhex(value).decode("utf-8", "surrogateescape")


def encode(msg: Message) -> bytes:
    """One line for `msg`."""
    if isinstance(msg, Ready):
        fields = [str(msg.listener), str(int(msg.killable)), str(msg.layer), _text(msg.cwd)]
    elif isinstance(msg, Failed):
        fields = [str(msg.code), _text(msg.message)]
    elif isinstance(msg, InitStatus):
        fields = [str(msg.status)]
    elif isinstance(msg, Forked):
        fields = [str(msg.pid)]
    elif isinstance(msg, Reaped):
        fields = [str(msg.status), str(msg.maxrss)]
    else:
        fields = []
    return (" ".join([_NAMES[type(msg)], *fields]) + "\n").encode()


def decode(line: bytes) -> Message:
    """The message on one line (without its newline); ValueError if it is not one."""
    kind, *fields = line.decode("ascii").split(" ")
    cls = _KINDS.get(kind)
    if cls is Ready and len(fields) == 4:
        return Ready(int(fields[0]), fields[1] == "1", _untext(fields[3]), int(fields[2]))
    if cls is Failed and len(fields) == 2:
        return Failed(int(fields[0]), _untext(fields[1]))
    if cls is InitStatus and len(fields) == 1:
        return InitStatus(int(fields[0]))
    if cls is Forked and len(fields) == 1:
        return Forked(int(fields[0]))
    if cls is Reaped and len(fields) == 2:
        return Reaped(int(fields[0]), int(fields[1]))
    if cls is TimedOut and not fields:
        return TimedOut()
    raise ValueError(f"not a wire message: {line[:80]!r}")


def send(fd: int, msg: Message) -> None:
    """Write `msg` in one write (well under PIPE_BUF, so never interleaved)."""
    os.write(fd, encode(msg))


class Reader:
    """Messages from one pipe; keeps a partial line until its end arrives."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._rest = b""
        self.eof = False

    def read(self) -> list[Message]:
        """The complete messages buffered, or else what one read brings (may be none); sets
        `eof` at end of file."""
        if b"\n" not in self._rest:
            data = os.read(self.fd, 4096)
            if not data:
                self.eof = True
            self._rest += data
        lines = self._rest.split(b"\n")
        self._rest = lines.pop()
        return [decode(line) for line in lines if line]

    def read_one(self) -> Message | None:
        """Block until one message arrives; None at end of file."""
        while True:
            if b"\n" in self._rest:
                line, self._rest = self._rest.split(b"\n", 1)
                return decode(line)
            data = os.read(self.fd, 4096)
            if not data:
                self.eof = True
                return None
            self._rest += data
