"""What the orchestrator is asked to do (`RunRequest`) and how it is set up (`JobsConfig`)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bubble.policy import Policy


def cpu_count() -> int:
    """CPUs this process may use (the default number of concurrent runs)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass(frozen=True, slots=True)
class JobsConfig:
    """Orchestrator settings, built from the settings table (`jobs/settings.py`)."""

    data_dir: Path
    db_url: str | None
    queue_url: str | None  # None: the in-process queue
    workers: int  # in-process queue: runs at once; the rest queue
    default_timeout: float
    max_timeout: float
    output_cap: int  # bytes of stdout (and of stderr) kept per run
    max_upload: int
    max_queue: int
    api_url: str | None  # BUBBLE_API
    heartbeat: float = 2.0
    stale_after: float = 20.0
    worker_name: str = "web"  # recorded on the runs this process executes
    kill_margin: float = 5.0  # backstop: our watchdog fires this long after the launcher's
    python: str = sys.executable
    target_path: str = "/usr/local/bin:/usr/bin:/bin"  # PATH given to the target
    fork_server: bool = True  # launchers forked by a pre-imported `bubble forkserver`
    rules_dirs: tuple[str, ...] = ()  # the user's Sigma rule folders, for behaviour reports

    @classmethod
    def from_settings(cls, values: Mapping[str, Any], **extra: Any) -> JobsConfig:
        """From `settings.resolve(...)`: {setting name: value}."""
        timeout = float(values["max_timeout"])
        return cls(
            data_dir=Path(values["data_dir"]).resolve(),
            db_url=values["db_url"] or None,
            queue_url=values["queue_url"] or None,
            workers=int(values["workers"] or cpu_count()),
            default_timeout=min(float(values["default_timeout"]), timeout),
            max_timeout=timeout,
            output_cap=int(values["output_cap"]),
            max_upload=int(values["max_upload"]),
            max_queue=int(values["max_queue"]),
            api_url=values["api_url"] or None,
            heartbeat=float(values["heartbeat"]),
            stale_after=float(values["stale_after"]),
            fork_server=bool(int(values["fork_server"])),
            rules_dirs=tuple(values["rules"] or ()),
            **extra,
        )

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.data_dir / 'bubble.db'}"


@dataclass(frozen=True, slots=True)
class RunRequest:
    """A validated request. For an upload, `argv` holds only the extra arguments: the
    orchestrator puts the interpreter and the sample's path in front."""

    argv: tuple[str, ...]
    policy: Policy
    timeout: float
    upload_id: str | None = None
    interpreter: tuple[str, ...] = ()
    command_line: str | None = None  # the command as typed, for display and re-runs
