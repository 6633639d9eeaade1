"""What the orchestrator is asked to do (`RunRequest`) and how it is set up (`JobsConfig`)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bubble.policy import Policy


def cpu_count() -> int:
    """CPUs this process may use (the default number of concurrent runs)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass(frozen=True, slots=True)
class JobsConfig:
    """Orchestrator settings; `bubble serve` flags and `create_app` config map onto these."""

    data_dir: Path
    db_url: str | None = None  # default: SQLite file in data_dir
    workers: int = field(default_factory=cpu_count)  # runs at once; the rest queue
    default_timeout: float = 8.0  # the seed's watchdog
    max_timeout: float = 300.0  # a run may ask for less, never more
    kill_margin: float = 5.0  # backstop: our watchdog fires this long after the launcher's
    output_cap: int = 16 << 20  # bytes of stdout (and of stderr) kept per run
    max_upload: int = 64 << 20
    max_queue: int = 1000
    api_url: str | None = None  # BUBBLE_API
    python: str = sys.executable
    target_path: str = "/usr/local/bin:/usr/bin:/bin"  # PATH given to the target
    fork_server: bool = True  # launchers forked by a pre-imported `bubble forkserver`

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
