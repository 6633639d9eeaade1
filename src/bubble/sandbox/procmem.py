"""Bounded, page-wise reads of a target's memory and /proc look-ups.

Target memory is hostile input: every read is bounded, a read that runs into an unmapped page
stops there, and a bad pointer becomes a marker string, never an exception in the caller.
What is read is a *log hint* only: another thread can change it right after.
"""

from __future__ import annotations

import errno as errno_mod
import os
import struct

from bubble.sandbox._abi import AT_FDCWD, PAGE, PATH_MAX
from bubble.sandbox._libc import RemoteReader, pidfd_getfd, pidfd_open

ARGV_MAX = 256  # argv entries recorded
ARGV_BYTES = 64 * 1024  # total argv text recorded
FIRST_CHUNK = 256  # bytes read first for a string; the rest page by page


def unreadable(err: OSError) -> str:
    return f"<unreadable: {errno_mod.errorcode.get(err.errno or 0, str(err.errno))}>"


class TargetMemory:
    """Reads from other processes with process_vm_readv, one page at a time."""

    def __init__(self) -> None:
        self._reader = RemoteReader(PAGE)

    def read(self, pid: int, addr: int, length: int) -> bytes:
        """Up to `length` bytes (fewer if an unmapped page is hit). OSError if none readable."""
        out = bytearray()
        while length > 0:
            chunk = min(length, PAGE - (addr % PAGE))
            try:
                data = self._reader.read(pid, addr, chunk)
            except OSError:
                if out:
                    break
                raise
            out += data
            if len(data) < chunk:
                break
            addr += chunk
            length -= chunk
        return bytes(out)

    def read_cstring(self, pid: int, addr: int, limit: int = PATH_MAX) -> tuple[bytes, str | None]:
        """A NUL-terminated string of at most `limit` bytes, and why it was cut short:
        None (complete), "EFAULT" (ran into an unmapped page: the kernel would fail the call)
        or "ENAMETOOLONG" (no NUL within `limit`). OSError if nothing is readable."""
        if addr == 0:
            raise OSError(errno_mod.EFAULT, "NULL pointer")
        # Most paths are short: read FIRST_CHUNK bytes first (not a whole page), and when the
        # NUL is in them, the common case, return that slice as it is.
        chunk = min(limit, PAGE - (addr % PAGE), FIRST_CHUNK)
        data = self._reader.read(pid, addr, chunk)  # OSError: nothing readable
        nul = data.find(b"\0")
        if nul >= 0:
            return data[:nul], None
        out = bytearray(data)
        while len(data) == chunk and len(out) < limit:
            addr += chunk
            chunk = min(limit - len(out), PAGE - (addr % PAGE))
            try:
                data = self._reader.read(pid, addr, chunk)
            except OSError:
                return bytes(out), "EFAULT"
            nul = data.find(b"\0")
            if nul >= 0:
                out += data[:nul]
                return bytes(out), None
            out += data
        # A short read ran into an unmapped page; a full one ran out of `limit`.
        return bytes(out), "ENAMETOOLONG" if len(out) >= limit else "EFAULT"

    def cstring(self, pid: int, addr: int, limit: int = PATH_MAX) -> bytes:
        """The readable bytes of a NUL-terminated string (see `read_cstring`)."""
        return self.read_cstring(pid, addr, limit)[0]

    def text(self, pid: int, addr: int, limit: int = PATH_MAX) -> str:
        """A string for an event: decoded, with `<cut: ERRNO>` appended when it did not end
        where the kernel would accept it, or a marker like `<unreadable: EFAULT>`."""
        try:
            data, cut = self.read_cstring(pid, addr, limit)
        except OSError as err:
            return unreadable(err)
        # Lossless: the event layer shows undecodable bytes as \xNN *and* gives their hex.
        text = data.decode("utf-8", "surrogateescape")
        return f"{text}<cut: {cut}>" if cut else text

    def pointers(self, pid: int, addr: int, count: int) -> list[int]:
        """Up to `count` 8-byte words at `addr` (fewer at an unmapped page)."""
        data = self.read(pid, addr, count * 8)
        n = len(data) // 8
        return list(struct.unpack_from(f"<{n}Q", data)) if n else []

    def argv(self, pid: int, addr: int) -> list[str]:
        """A NULL-terminated string array, bounded in entries and total bytes."""
        if addr == 0:
            return []
        try:
            ptrs = self.pointers(pid, addr, ARGV_MAX + 1)
        except OSError as err:
            return [unreadable(err)]
        end = ptrs.index(0) if 0 in ptrs else None
        out: list[str] = []
        budget = ARGV_BYTES
        for ptr in ptrs[:end]:
            if budget <= 0 or len(out) >= ARGV_MAX:
                out.append("<truncated>")
                break
            s = self.text(pid, ptr, min(PATH_MAX, budget))
            budget -= len(s) + 1
            out.append(s)
        return out


def readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def fd_path(pid: int, fd: int) -> str:
    """What fd `fd` of `pid` points at, e.g. `/tmp/x` or `pipe:[123]`."""
    return readlink(f"/proc/{pid}/fd/{fd}") or f"<fd {fd}>"


def resolve(pid: int, dirfd: int, path: str) -> str:
    """`path` made absolute the way the kernel would start resolving it (lexically)."""
    if path.startswith("<"):
        return path
    if not path.startswith("/"):
        base = readlink(f"/proc/{pid}/cwd" if dirfd == AT_FDCWD else f"/proc/{pid}/fd/{dirfd}")
        if base is None:
            return path
        if not path:
            return base  # AT_EMPTY_PATH: the fd itself
        path = f"{base.rstrip('/')}/{path}"
    return os.path.normpath(path) if ("/." in path or "//" in path) else path


def status_fields(pid: int, *fields: str) -> dict[str, str]:
    """Fields of /proc/PID/status (e.g. VmHWM, VmPeak in kB; Tgid; NSpid) as raw text;
    missing ones absent (all absent if the process is gone)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            data = fh.read()
    except OSError:
        return {}
    out = {}
    for field in fields:
        key = b"\n" + field.encode() + b":"
        start = data.find(key)
        if start >= 0:
            end = data.find(b"\n", start + 1)
            out[field] = data[start + len(key) : end].decode().strip()
    return out


def status_kb(pid: int, field: str) -> int | None:
    """An integer field of /proc/PID/status (kB for Vm* fields), or None."""
    text = status_fields(pid, field).get(field)
    return int(text.split()[0]) if text else None


def copy_fd(pid: int, fd: int) -> int:
    """Our own copy of descriptor `fd` of the process that thread `pid` belongs to
    (pidfd_getfd; notifications carry thread ids, pidfds want the thread group's)."""
    pidfd = pidfd_open(status_kb(pid, "Tgid") or pid)
    try:
        return pidfd_getfd(pidfd, fd)
    finally:
        os.close(pidfd)
