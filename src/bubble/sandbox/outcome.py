"""Exit accounting: how a run ended, from the facts collected while it ran. Pure: no process,
no clock, no file, so every combination is unit-tested (tests/unit/test_outcome.py)."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Outcome:
    """What `process.exit` says and what `bubble run` exits with."""

    result: int  # bubble's own exit status (DESIGN §3)
    exit_code: int | None  # None: ended by a signal
    signal: int | None
    max_rss_kb: int
    notes: str


def peak_rss(seen_kb: int, wait4_kb: int) -> int:
    """Peak memory as seen at exit_group and by sampling; wait4's figure only as a last
    resort, since it also holds the launcher's memory from before exec."""
    return seen_kb or wait4_kb


def account(
    status: int,
    error: tuple[int, str] | None = None,
    limit: str | None = None,
    max_rss_kb: int = 0,
    output: tuple[int, int] | None = None,
) -> Outcome:
    """`status`: the target's raw wait status; `error`: (code, message) if Bubble could not
    start it (a non-zero code wins over the status); `output`: (kept, dropped) bytes under
    --max-output."""
    code: int | None
    sig: int | None = None
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        code, result = None, 128 + sig
    else:
        code = result = os.WEXITSTATUS(status)
    if error is not None and error[0] != 0:
        result = code = error[0]
        sig = None
    notes = f"exit={code}" if sig is None else f"signal={sig}"
    if output and output[1]:
        notes += f" output_kept={output[0]} output_dropped={output[1]}"
    if limit:
        notes += f" limit={limit}"
    return Outcome(result, code, sig, max_rss_kb, f"{notes} max_rss_kb={max_rss_kb}")
