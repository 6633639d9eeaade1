"""The data dir on disk (of the web host and of each worker). Everything a run produces
is in the store; on disk there is only what executing it needs, with modes that keep a
target (running as `nobody` when the executor is root) out of other runs' directories:

  bubble.db                  0600  the store, unless a DB URL is given
  work/<id>/                 0755  the run's cwd (0777 when FS writes are allowed and the
                                   target runs as another user); removed after the run
  work/.<id>.drops/          0700  dropped files on their way into the store
  offline/v1_<kind>.ndjson   0700  the BUBBLE_API offline sink
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import tempfile
from pathlib import Path

log = logging.getLogger("bubble.jobs")


class Layout:
    """Paths under the data dir, created with the modes above."""

    def __init__(self, data: Path) -> None:
        self.data = data
        data.mkdir(parents=True, exist_ok=True)
        os.chmod(data, 0o711)  # others may pass through to work/, not list
        self.offline = data / "offline"
        self.database = data / "bubble.db"
        self.work = _work_root(data / "work")

    def work_dir(self, run_id: str) -> Path:
        return self.work / run_id

    def close(self) -> None:
        if self.work != self.data / "work":  # our own temporary fallback
            shutil.rmtree(self.work, ignore_errors=True)


def make_work_dir(path: Path, writable_by_others: bool) -> Path:
    path.mkdir(mode=0o700)
    os.chmod(path, 0o777 if writable_by_others else 0o755)
    return path


def _work_root(preferred: Path) -> Path:
    """Where run working directories go. As root the target runs as another user, which
    must be able to reach its cwd: if some parent of the data dir is closed to others
    (e.g. /root), use a fresh directory under the system temp dir instead."""
    preferred.mkdir(mode=0o711, exist_ok=True)
    os.chmod(preferred, 0o711)
    if os.geteuid() != 0:
        return preferred
    for path in (preferred, *preferred.parents):
        if not os.stat(path).st_mode & stat.S_IXOTH:
            fallback = _temp_work_root(preferred)
            log.warning("%s is closed to other users; run directories go to %s", path, fallback)
            return fallback
    return preferred


def _temp_work_root(preferred: Path) -> Path:
    """The same temp directory for the same data dir (so a restart finds the work dirs of
    interrupted runs), trusted only if it is ours: a real directory, owned by us, not
    writable by others. Otherwise a fresh one."""
    digest = hashlib.sha256(str(preferred.resolve()).encode()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / f"bubble-work-{digest}"
    try:
        path.mkdir(mode=0o711)
    except FileExistsError:
        st = os.lstat(path)
        mine = stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid()
        if not mine or st.st_mode & 0o022:
            path = Path(tempfile.mkdtemp(prefix="bubble-work-"))
    os.chmod(path, 0o711)
    return path
