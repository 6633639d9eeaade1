"""`--keep-root` keeps uid 0, not root's administrative powers.

What `--keep-root` is for is reading what only root may read. So the target keeps the
capabilities in `KEPT` (file access and ownership, which `--deny-fs` mediates, and identity
changes, which give nothing the filter allows) and loses every other one from every set: the
bounding set (so exec cannot give them back: root's exec gets the bounding set), the
effective, permitted and inheritable sets, and the ambient set. `--keep-caps` keeps them all.
The administrative calls stay mediated regardless (admin ioctl families, adjtimex, syslog,
mount, modules...), so with `--keep-caps` they are still denied and logged.
"""

from __future__ import annotations

import ctypes

from bubble.sandbox._libc import libc, prctl

PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
_CAPABILITY_VERSION_3 = 0x20080522

# capability number -> name, for what root keeps (linux/capability.h)
KEPT = {
    0: "CAP_CHOWN",
    1: "CAP_DAC_OVERRIDE",
    2: "CAP_DAC_READ_SEARCH",
    3: "CAP_FOWNER",
    4: "CAP_FSETID",
    5: "CAP_KILL",
    6: "CAP_SETGID",
    7: "CAP_SETUID",
}
LAST_CAP_MAX = 63  # /proc/sys/kernel/cap_last_cap is 40 on 6.18; drop anything the kernel has


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as fh:
            return int(fh.read())
    except (OSError, ValueError):
        return LAST_CAP_MAX


def drop_admin() -> None:
    """Drop every capability but `KEPT` from all sets of the calling process (needs
    CAP_SETPCAP for the bounding set: call while still root with all capabilities)."""
    for cap in range(_last_cap() + 1):
        if cap not in KEPT:
            try:
                prctl(PR_CAPBSET_DROP, cap)
            except OSError as err:
                if err.errno != 22:  # EINVAL: a capability this kernel does not know
                    raise
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    header = _Header(_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget failed")
    keep = sum(1 << cap for cap in KEPT)
    for word in (0, 1):
        mask = keep >> (32 * word) & 0xFFFFFFFF
        data[word].effective &= mask
        data[word].permitted &= mask
        data[word].inheritable &= mask
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")
