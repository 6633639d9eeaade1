"""A thin ctypes layer over libseccomp.so.2: build a filter, export it as classic BPF.

We only *build* with libseccomp. Loading goes through the raw seccomp() syscall (so we pick
the flags: NEW_LISTENER, WAIT_KILLABLE_RECV, LOG) and notifications are served with raw ioctls,
because libseccomp keeps the listener as state of the process that loaded the filter.
Every libseccomp return code is checked.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence

from bubble.errors import KernelError

ACT_ALLOW = 0x7FFF0000
ACT_NOTIFY = 0x7FC00000

# enum scmp_filter_attr
ATTR_ACT_BADARCH = 2
ATTR_CTL_NNP = 3

# enum scmp_compare
CMP_NE = 1
CMP_MASKED_EQ = 7


class _ArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


_lib: ctypes.CDLL | None = None


def lib() -> ctypes.CDLL:
    """libseccomp, loaded by soname on first use."""
    global _lib
    if _lib is None:
        try:
            handle = ctypes.CDLL("libseccomp.so.2", use_errno=True)
        except OSError as err:
            raise KernelError(
                f"cannot load libseccomp.so.2: {err}",
                "install it: apt-get install libseccomp2",
            ) from None
        handle.seccomp_init.restype = ctypes.c_void_p
        handle.seccomp_init.argtypes = [ctypes.c_uint32]
        handle.seccomp_release.argtypes = [ctypes.c_void_p]
        handle.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
        handle.seccomp_rule_add_array.argtypes = [
            ctypes.c_void_p,
            ctypes.c_uint32,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.POINTER(_ArgCmp),
        ]
        handle.seccomp_syscall_resolve_num_arch.argtypes = [ctypes.c_uint32, ctypes.c_int]
        handle.seccomp_syscall_resolve_num_arch.restype = ctypes.c_void_p
        handle.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
        _lib = handle
    return _lib


def _rc(result: int, what: str) -> None:
    if result < 0:
        raise KernelError(
            f"libseccomp {what} failed: {os.strerror(-result)}", "see `bubble selftest`"
        )


def name_of(arch: int, nr: int) -> str | None:
    """The syscall name for `nr` on `arch` (e.g. an i386 number), or None."""
    ptr = lib().seccomp_syscall_resolve_num_arch(arch, nr)
    if not ptr:
        return None
    name = ctypes.string_at(ptr).decode()
    ctypes.CDLL("libc.so.6").free(ctypes.c_void_p(ptr))
    return name


Cmp = tuple[int, int, int, int]  # (arg index, op, datum_a, datum_b)


class Filter:
    """A libseccomp filter context. Use as a context manager; `export()` gives BPF bytes."""

    def __init__(self, default_action: int = ACT_ALLOW) -> None:
        self._ctx = lib().seccomp_init(default_action)
        if not self._ctx:
            raise KernelError("seccomp_init failed", "is libseccomp2 installed and working?")

    def __enter__(self) -> Filter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._ctx:
            lib().seccomp_release(self._ctx)
            self._ctx = None

    def attr(self, attr: int, value: int) -> None:
        _rc(lib().seccomp_attr_set(self._ctx, attr, value), f"attr_set({attr})")

    def rule(self, action: int, nr: int, cmps: Sequence[Cmp] = ()) -> None:
        array = (_ArgCmp * max(1, len(cmps)))(*[_ArgCmp(*c) for c in cmps])
        _rc(lib().seccomp_rule_add_array(self._ctx, action, nr, len(cmps), array), f"rule({nr})")

    def export(self) -> bytes:
        """The filter as an array of `struct sock_filter` (8 bytes each)."""
        fd = os.memfd_create("bubble-bpf", os.MFD_CLOEXEC)
        try:
            _rc(lib().seccomp_export_bpf(self._ctx, fd), "export_bpf")
            os.lseek(fd, 0, os.SEEK_SET)
            chunks = []
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)
