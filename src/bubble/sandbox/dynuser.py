"""`--user dynamic`: a uid of the run's own, from a range no account uses.

With a uid nobody else has, every call that acts on "all processes of my uid" (PRIO_USER,
IOPRIO_WHO_USER, kill(-1), RLIMIT_NPROC's count) reaches only the run itself, even where the
filter would miss one. The range is systemd's DynamicUser range (61184-65519): distributions
keep it free of accounts. A uid is taken when no account or group has it, no process runs
with it, and we hold its lock file (flock) in /run/bubble: concurrent runs never share one.
The lock is held by the supervisor until it exits.
"""

from __future__ import annotations

import fcntl
import grp
import os
import pwd

FIRST, LAST = 61184, 65519
LOCK_DIR = "/run/bubble"


def _in_use(uid: int) -> bool:
    for getter in (pwd.getpwuid, grp.getgrgid):
        try:
            getter(uid)
            return True
        except KeyError:
            pass
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.stat(f"/proc/{name}").st_uid == uid:
                return True
        except OSError:
            continue
    return False


def allocate() -> tuple[int, int]:
    """(uid, lock fd): a free uid (also used as the gid), locked until the fd is closed."""
    os.makedirs(LOCK_DIR, 0o700, exist_ok=True)
    span = LAST - FIRST + 1
    start = int.from_bytes(os.urandom(2), "little") % span
    for i in range(span):
        uid = FIRST + (start + i) % span
        fd = os.open(f"{LOCK_DIR}/uid-{uid}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        if _in_use(uid):
            os.close(fd)
            continue
        return uid, fd
    raise OSError(f"no free uid in {FIRST}-{LAST}")
