"""An open carried out by the supervisor for the caller (onbehalf.py): probed, then opened in
the caller's root, handed over with ADDFD by the caller of `open_in`.

Opening a device or a FIFO has effects of its own, or blocks: the supervisor opens only what
it has seen to be a file or a directory (or nothing yet, with O_CREAT), and opens it
O_NONBLOCK in case a FIFO was swapped in meanwhile (the target racing itself), taking the
flag off again unless the caller asked for it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat

from bubble.sandbox.identity import Caller
from bubble.sandbox.resolve import Inexact, openat2, plain, split

O_LARGEFILE = 0o100000  # x86_64; the kernel sets it on every open of a 64-bit caller
O_TMPFILE = 0o20000000 | os.O_DIRECTORY
FASYNC = 0o20000
# What open(2) reads of its flags (VALID_OPEN_FLAGS): openat2 refuses other bits that open
# and openat ignore, so a call carrying them is left to the kernel.
VALID_OPEN = (
    os.O_ACCMODE | os.O_CREAT | os.O_EXCL | os.O_NOCTTY | os.O_TRUNC | os.O_APPEND
    | os.O_NONBLOCK | os.O_DSYNC | FASYNC | os.O_DIRECT | O_LARGEFILE | os.O_DIRECTORY
    | os.O_NOFOLLOW | os.O_NOATIME | os.O_CLOEXEC | os.O_PATH | O_TMPFILE | os.O_SYNC
)  # fmt: skip
# Errors of openat2 that may come from its resolve flags or our O_NONBLOCK, not the call:
# EXDEV/EAGAIN (a `..` raced), ELOOP (a magic link refused), ENXIO (a FIFO without reader).
_NOT_THE_CALLS = frozenset({errno.EXDEV, errno.ELOOP, errno.EAGAIN, errno.ENXIO})


def _checked(fd: int, caller: Caller, exact: bool) -> None:
    if exact:
        plain(fd)
        caller.mapped(os.fstat(fd))


def probe(root: int, full: bytes, flags: int, caller: Caller, exact: bool) -> None:
    """What the open names must be a file or a directory, or absent with O_CREAT."""
    excl = flags & (os.O_CREAT | os.O_EXCL) == os.O_CREAT | os.O_EXCL
    nofollow = bool(flags & os.O_NOFOLLOW or excl)
    try:
        fd = openat2(root, full, os.O_PATH | os.O_CLOEXEC | (os.O_NOFOLLOW if nofollow else 0))
    except FileNotFoundError:
        if not flags & os.O_CREAT:
            raise
        fd = openat2(root, split(full)[0], os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            _checked(fd, caller, exact)
        finally:
            os.close(fd)
        return
    try:
        mode = os.fstat(fd).st_mode
        _checked(fd, caller, exact)
    finally:
        os.close(fd)
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or (nofollow and stat.S_ISLNK(mode))):
        raise Inexact("not a file or directory")


def open_in(root: int, full: bytes, flags: int, mode: int, exact: bool) -> int:
    """The open itself, resolved in the caller's root: our descriptor."""
    mode = mode & 0o7777 if flags & (os.O_CREAT | O_TMPFILE) else 0
    try:
        fd = openat2(
            root,
            full,
            (flags & VALID_OPEN) | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK | O_LARGEFILE,
            mode,
        )
    except OSError as err:
        if exact and err.errno in _NOT_THE_CALLS:
            raise Inexact("the resolve flags, not the call") from None
        raise
    st = os.fstat(fd)
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        os.close(fd)  # swapped after the probe: the target races itself
        raise Inexact("not a file or directory")
    if not flags & os.O_NONBLOCK:
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    return fd
