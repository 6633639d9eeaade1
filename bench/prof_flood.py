"""Where a denied call's time goes in the supervisor: py-spy (wall clock, sampled) and cProfile
(exact call counts, but its own overhead inflates small functions), both on `python -m bubble
run` serving a creat flood, plus user/sys CPU per call and micro-timings of the event path.

py-spy runs with --idle so that time the supervisor spends blocked (poll, the SEND that wakes
the target) is counted, and in its default blocking mode: --nonblocking reads the frames of a
running interpreter racily and, on this fast loop, pinned a fifth of the samples on the wrong
line (the SEND ioctl). perf showed the supervisor CPU-bound in user space (the interpreter),
so the blocking mode's pauses do not hide a wait that would otherwise be there.
"""

from __future__ import annotations

import pstats
import re
import resource
import shutil
import statistics
import subprocess
import timeit
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import runners as rs
from common import OUT, PYTHON, Tools, timed

FRAME = re.compile(r"^(.*) \((.*):(\d+)\)$")
PROF_RUN = Path(__file__).with_name("prof_run.py")


def _flood_cmd(tools: Tools, n: int) -> list[str]:
    events = str(OUT / "profile-events.ndjson")
    probe = [tools.probe, "flood", str(n), "85", "s:/proc/bench-denied/x", "0644"]
    return ["-m", "bubble", "run", "--events", events, "--", *probe]


def per_call_us(tools: Tools, n: int, rounds: int = 3) -> float:
    """Bubble's µs per denied call, unprofiled: (time(N) - time(0)) / N, median of `rounds`."""
    cmd = [PYTHON, *_flood_cmd(tools, n)]
    zero = [PYTHON, *_flood_cmd(tools, 0)]
    diffs = [(timed(cmd) - timed(zero)) / n * 1e6 for _ in range(rounds)]
    return sorted(diffs)[len(diffs) // 2]


def pyspy(tools: Tools, n: int, us: float) -> str:
    """Top leaf lines and inclusive functions from a py-spy recording, as markdown; `us` (µs
    per call, unprofiled) turns each share of the samples into µs per denied call."""
    exe = shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy")
    if not Path(exe).exists():
        return "_py-spy not installed (`pip install py-spy`): skipped._\n"
    raw = OUT / "flood.pyspy.txt"
    cmd = [exe, "record", "--idle", "--format", "raw", "-r", "997"]
    cmd += ["-o", str(raw), "--", PYTHON, *_flood_cmd(tools, n)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0 or not raw.exists():
        return f"_py-spy failed: {done.stderr.strip()[-300:]}_\n"
    leaf, incl, total = Counter(), Counter(), 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if "_loop_thread" not in stack:
            continue  # the loop thread only: the main thread waits in join() all along
        k = int(count)
        total += k
        frames = [m for f in stack.split(";") if (m := FRAME.match(f))]
        if not frames:
            leaf["(no Python frame: interpreter start)"] += k
            continue
        m = frames[-1]
        leaf[f"`{m[1]}` {Path(m[2]).name}:{m[3]}"] += k
        for name in {f"`{m[1]}` ({Path(m[2]).name})" for m in frames}:
            incl[name] += k
    out = [
        f"py-spy, the loop thread's {total} samples (wall clock, idle included), N={n:,} "
        f"calls; µs = share x {us:.1f} µs, the unprofiled cost per denied call.\n",
        "| self % | ≈ µs/call | line |",
        "| ---: | ---: | --- |",
    ]
    out += [
        f"| {100 * v / total:.1f} | {us * v / total:.1f} | {k} |" for k, v in leaf.most_common(16)
    ]
    out += ["", "| inclusive % | ≈ µs/call | function |", "| ---: | ---: | --- |"]
    skip = ("threading.py", "_loop_thread", "importlib")
    rows = [(k, v) for k, v in incl.most_common(40) if not any(s in k for s in skip)]
    out += [f"| {100 * v / total:.1f} | {us * v / total:.1f} | {k} |" for k, v in rows[:20]]
    return "\n".join(out) + "\n"


def cprofile(tools: Tools, n: int, us: float) -> str:
    """The functions with the most own time per denied call, as markdown."""
    prof = OUT / "flood.prof"
    # The loop thread only (see prof_run.py: `python -m cProfile` writes nothing for a run).
    wrap = [PYTHON, str(PROF_RUN), str(prof), "--thread", "bubble-supervisor", "--"]
    zero = timed([*wrap, *_flood_cmd(tools, 0)[2:]])
    prof.unlink(missing_ok=True)
    profiled = timed([*wrap, *_flood_cmd(tools, n)[2:]])
    if not prof.exists():
        return f"_cProfile wrote no {prof.name}: skipped._\n"
    stats = pstats.Stats(str(prof))
    entries = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)  # type: ignore[attr-defined]
    out = [
        f"cProfile of the supervisor's loop thread, N={n:,}: {us:.0f} µs/call unprofiled, "
        f"{(profiled - zero) / n * 1e6:.0f} µs/call profiled: its overhead inflates small "
        "functions, so read the call counts and the ranking, not the absolute times.\n",
        "| calls per denial | own µs per denial | cum µs per denial | function |",
        "| ---: | ---: | ---: | --- |",
    ]
    for (file, line, func), (_cc, nc, tt, ct, _callers) in entries[:16]:
        where = f"{Path(file).name}:{line}" if line else file
        out.append(f"| {nc / n:.2f} | {tt / n * 1e6:.2f} | {ct / n * 1e6:.2f} | `{func}` {where} |")
    return "\n".join(out) + "\n"


def micro() -> str:
    """The event path outside the kernel: build, number and serialise one alert."""
    from bubble import events

    def alert() -> events.Call:
        return events.Call(
            type=events.ALERT,
            pid=4242,
            category="fs",
            syscall="creat",
            syscall_no=85,
            reason="errno",
            denied="EPERM",
            path="/proc/bench-denied/x",
            mode=420,
        )

    clock = events.Clock()
    ev = alert()
    n = 20_000

    def best(fn: Callable[[], object]) -> float:  # noise only ever adds time
        return min(timeit.repeat(fn, number=n, repeat=5))

    rows = [
        ("build an alert `events.Call`", best(alert)),
        ("`Clock.now()` timestamp", best(clock.now)),
        ("`serialise()` to an NDJSON line", best(lambda: events.serialise(ev, 1, ""))),
    ]
    out = ["| step | µs (best of 5) |", "| --- | ---: |"]
    out += [f"| {name} | {t / n * 1e6:.2f} |" for name, t in rows]
    return "\n".join(out) + "\n"


def _rusage(argv: list[str]) -> tuple[float, float, float]:
    """(user s, sys s, context switches) of one run and the descendants it waited for."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    switches = (after.ru_nvcsw - before.ru_nvcsw) + (after.ru_nivcsw - before.ru_nivcsw)
    return after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime, switches


def cpu_split(tools: Tools, n: int, rounds: int = 3) -> str:
    """User vs kernel CPU and context switches per denied call, for Bubble and the floors:
    says whether the time is the interpreter's (user) or the kernel's round trip (sys)."""
    probe = [tools.probe, "flood", str(n), "85", "s:/proc/bench-denied/x", "0644"]
    zero = [tools.probe, "flood", "0", "85", "s:/proc/bench-denied/x", "0644"]
    out = ["| runner | user µs/call | sys µs/call | context switches/call |"]
    out.append("| --- | ---: | ---: | ---: |")
    for r in (rs.bubble(), rs.floor(tools), rs.floor_event(tools), rs.pyfloor(events=True)):
        per = []
        for _ in range(rounds):
            full, base = _rusage(r.cmd(probe)), _rusage(r.cmd(zero))
            per.append([(a - b) / n for a, b in zip(full, base, strict=True)])
        med = [statistics.median(col) for col in zip(*per, strict=True)]
        out.append(f"| {r.label} | {med[0] * 1e6:.1f} | {med[1] * 1e6:.1f} | {med[2]:.2f} |")
    return "\n".join(out) + "\n"
