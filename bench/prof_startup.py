"""Where `bubble run -- /bin/true`'s start-up goes: a timeline of its phases (strace, stopping
only at the few syscalls that mark them), `-X importtime`, and cProfile's cumulative view.

The timeline uses strace --seccomp-bpf so that the thousands of other syscalls Python makes
while starting are not slowed down by a ptrace stop each.
"""

from __future__ import annotations

import pstats
import re
import shutil
import statistics
import subprocess
from pathlib import Path

from common import BUBBLE, OUT, PYTHON

TRACED = "execve,clone,clone3,write,exit_group"
LINE = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(?:<\.\.\. )?(\w+|---)[( ]")


def _timeline_once() -> dict[str, float] | None:
    log = OUT / "startup.strace"
    cmd = ["strace", "-f", "-ttt", "-qq", "--seccomp-bpf", "-e", f"trace={TRACED}"]
    cmd += ["-o", str(log), BUBBLE, "run", "--events", "/dev/null", "--", "/bin/true"]
    if subprocess.run(cmd, capture_output=True).returncode != 0:
        return None
    main_pid, marks = None, {}
    for line in log.read_text().splitlines():
        m = LINE.match(line)
        if not m:
            continue
        pid, t, call = int(m[1]), float(m[2]), m[3]
        if main_pid is None:
            main_pid, marks["exec"] = pid, t
        elif pid == main_pid and call == "clone" and "clone" not in marks:
            marks["clone"] = t
        elif pid != main_pid and call == "execve" and '"/bin/true"' in line:
            marks["target"] = t
        elif pid == main_pid and "SIGCHLD" in line:
            marks["sigchld"] = t
        elif pid == main_pid and call == "write" and "sigchld" in marks:
            marks["last_write"] = t
        elif pid == main_pid and call == "exit_group":
            marks["exit"] = t
    order = ("exec", "clone", "target", "sigchld", "last_write", "exit")
    if any(k not in marks for k in order):
        return None
    return {
        "interpreter, imports, filter build (until fork)": marks["clone"] - marks["exec"],
        "child set-up: landlock, filter load, listener hand-off, exec": marks["target"]
        - marks["clone"],
        "/bin/true runs (its exit_group is notified)": marks["sigchld"] - marks["target"],
        "reap, last event written": marks["last_write"] - marks["sigchld"],
        "interpreter shutdown (after the last write)": marks["exit"] - marks["last_write"],
    }


def timeline(rounds: int = 7) -> str:
    if shutil.which("strace") is None:
        return "_strace not installed: no timeline._\n"
    runs = [r for r in (_timeline_once() for _ in range(rounds)) if r]
    if not runs:
        return "_could not parse the strace timeline._\n"
    out = [f"Median of {len(runs)} traced runs (strace adds a little to each marked call).\n"]
    out += ["| phase | ms |", "| --- | ---: |"]
    total = 0.0
    for phase in runs[0]:
        ms = statistics.median(r[phase] for r in runs) * 1e3
        total += ms
        out.append(f"| {phase} | {ms:.1f} |")
    out.append(f"| **total** | **{total:.1f}** |")
    return "\n".join(out) + "\n"


def importtime(rounds: int = 5) -> str:
    """Cumulative import cost of the top-level imports and the largest own costs, µs."""
    cum: dict[str, list[int]] = {}
    own: dict[str, list[int]] = {}
    for _ in range(rounds):
        cmd = [PYTHON, "-X", "importtime", "-m", "bubble", "run", "--events", "/dev/null"]
        done = subprocess.run([*cmd, "--", "/bin/true"], capture_output=True, text=True)
        for line in done.stderr.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            self_us, cum_us, name = line[len("import time:") :].split("|")
            key = name.rstrip()
            own.setdefault(key.strip(), []).append(int(self_us))
            if not key.startswith("  "):  # a top-level import: its cumulative counts once
                cum.setdefault(key.strip(), []).append(int(cum_us))
    med_cum = {k: statistics.median(v) for k, v in cum.items()}
    med_own = {k: statistics.median(v) for k, v in own.items()}
    total = sum(med_cum.values())
    out = [f"`-X importtime`, median of {rounds}: all imports ≈ **{total / 1e3:.1f} ms**.\n"]
    out += ["| top-level import | cumulative ms |", "| --- | ---: |"]
    for k, v in sorted(med_cum.items(), key=lambda kv: -kv[1])[:10]:
        out.append(f"| `{k}` | {v / 1e3:.1f} |")
    out += ["", "| module (own time) | ms |", "| --- | ---: |"]
    for k, v in sorted(med_own.items(), key=lambda kv: -kv[1])[:12]:
        out.append(f"| `{k}` | {v / 1e3:.1f} |")
    return "\n".join(out) + "\n"


def cprofile() -> str:
    prof = OUT / "startup.prof"
    prof.unlink(missing_ok=True)
    # Not `python -m cProfile`: `bubble run` ends with os._exit, which skips its dump.
    cmd = [PYTHON, str(Path(__file__).with_name("prof_run.py")), str(prof), "--", "run"]
    subprocess.run([*cmd, "--events", "/dev/null", "--", "/bin/true"], capture_output=True)
    if not prof.exists():
        return f"_cProfile wrote no {prof.name}: skipped._\n"
    stats = pstats.Stats(str(prof))
    items = stats.stats.items()  # type: ignore[attr-defined]
    ours = [(k, v) for k, v in items if "bubble" in k[0] and k[2] != "<module>"]
    ours.sort(key=lambda kv: kv[1][3], reverse=True)
    out = ["cProfile of `bubble run -- /bin/true`; module bodies are left out, but a function's "
           "cumulative time includes the imports it triggers (`launch` imports the sandbox).\n",
           "| cum ms | own ms | calls | function |"]  # fmt: skip
    out.append("| ---: | ---: | ---: | --- |")
    for (file, line, func), (_cc, nc, tt, ct, _c) in ours[:14]:
        out.append(
            f"| {ct * 1e3:.1f} | {tt * 1e3:.1f} | {nc} | `{func}` {Path(file).name}:{line} |"
        )
    return "\n".join(out) + "\n"
