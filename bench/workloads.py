"""Workloads (a) denied calls and (c) start-up ((b) is in allowedcalls.py): each run by several
runners, interleaved, several rounds; the result is a list of table rows.

Per-call costs are differences, (time(N) - time(0)) / N for the same runner in the same
round, so each runner's start-up cancels out and only the per-call cost remains.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import forkstart
import runners as rs
from common import PYTHON, BenchError, Row, Tools, interleave, median, ratio, run, spread, timed

# creat() of a path under /proc fails natively with ENOENT, without creating anything: the
# native and strace runs make exactly the calls that Bubble and the C floor deny.
DENIED_ARG = "s:/proc/bench-denied/x"
CREAT = "85"


@dataclass(frozen=True)
class Config:
    rounds: int
    denied_calls: int
    loop_scale: float  # multiplies the loop lengths in (b)
    startup_rounds: int
    find_root: str


FULL = Config(rounds=7, denied_calls=20_000, loop_scale=1.0, startup_rounds=21, find_root="/usr")
QUICK = Config(rounds=5, denied_calls=10_000, loop_scale=0.1, startup_rounds=9, find_root="/usr")


def _per_call(samples: dict[str, list[float]], name: str, n: int, scale: float) -> list[float]:
    return [
        (a - b) / n * scale for a, b in zip(samples[f"{name}@n"], samples[f"{name}@0"], strict=True)
    ]


# -- (a) ---------------------------------------------------------------------------------------
def denied(tools: Tools, cfg: Config, skipped: dict[str, str]) -> list[Row]:
    n = cfg.denied_calls
    runners = rs.available(
        [
            rs.native(),
            rs.bubble(),
            rs.floor(tools),
            rs.floor_event(tools),
            rs.pyfloor(),
            rs.pyfloor(events=True),
            rs.kernel_deny(tools),
            rs.strace("creat", bpf=False),
            rs.strace("creat", bpf=True),
        ],
        skipped,
    )

    def job(r: rs.Runner, calls: int) -> Callable[[], float]:
        errno = "ENOENT" if r.name in ("native", "strace", "strace-bpf") else "EPERM"
        expect = rf"FLOOD {calls} same={calls} errno={errno}\b" if calls else r"FLOOD 0 "
        argv = r.cmd([tools.probe, "flood", str(calls), CREAT, DENIED_ARG, "0644"])

        def once() -> float:
            done = run(argv, expect)
            if r.events is not None and calls and (got := rs.count_events(r.events)) != calls:
                raise BenchError(f"{r.name}: {got} alert events for {calls} denied calls")
            cpu.setdefault(f"{r.name}@{'n' if calls else '0'}", []).append(done.cpu)
            return done.wall

        return once

    cpu: dict[str, list[float]] = {}  # CPU seconds per run, keyed like `samples`
    # An in-kernel denial costs ~0.15 µs: it needs 50x the calls to rise above start-up jitter.
    calls = {r.name: n * 50 if r.name == "kernel" else n for r in runners}
    jobs = {}
    for r in runners:
        jobs[f"{r.name}@n"], jobs[f"{r.name}@0"] = job(r, calls[r.name]), job(r, 0)
    samples = interleave(jobs, cfg.rounds)
    us = {r.name: _per_call(samples, r.name, calls[r.name], 1e6) for r in runners}
    cpu_us = {r.name: _per_call(cpu, r.name, calls[r.name], 1e6) for r in runners}
    label = {r.name: r.label for r in runners}
    return [
        *_denied_rows(f"(a) denied creat, wall µs/call (N={n:,})", us, label, ""),
        # The CPU view: supervisor + target CPU per call. Under load the wall-clock figure
        # also holds the scheduling delays of two context switches per call.
        *_denied_rows(f"(a) denied creat, CPU µs/call (N={n:,})", cpu_us, label, "CPU "),
    ]


def _denied_rows(
    wl: str, us: dict[str, list[float]], label: dict[str, str], kind: str
) -> list[Row]:
    med = {name: median(v) for name, v in us.items()}
    rows = []
    for name, values in us.items():
        row = Row(wl, label[name], med[name], "µs", noise=spread(values), samples=values)
        row.vs_native = ratio(med[name], med["native"])
        if name != "floor" and "floor" in med:
            row.vs_ref, row.ref = ratio(med[name], med["floor"]), "C floor"
        rows.append(row)
    b = med["bubble"]
    if "floor" in med:
        x = ratio(b, med["floor"])
        rows.append(
            Row(wl, "bubble", b, "µs", None, x, "C floor", f"{kind}≤ 3x C floor", _le(x, 3))
        )
    for ref in ("floor+event", "pyfloor+event"):
        if ref in med:
            x = ratio(b, med[ref])
            rows.append(Row(wl, "bubble", b, "µs", None, x, label[ref], "", None))
    for st in ("strace-bpf", "strace"):
        if st in med:
            x = ratio(b, med[st])
            # Issue 14 restated issue 5's "2x faster than strace" as "no slower" (<= 1x).
            target = f"{kind}≤ 1x strace"
            rows.append(Row(wl, "bubble", b, "µs", None, x, label[st], target, _le(x, 1.0)))
    return rows


def _le(x: float | None, limit: float) -> bool | None:
    return None if x is None else x <= limit


# -- (c) ---------------------------------------------------------------------------------------
def startup(tools: Tools, cfg: Config, skipped: dict[str, str]) -> list[Row]:
    runners = rs.available(
        [
            rs.native(),
            rs.bubble(),
            rs.bubble("--fs-overlay", name="bubble-overlay", label="bubble --fs-overlay"),
            rs.Runner("bubble-m", "python -m bubble run", lambda a: _bubble_m(a)),
            rs.floor(tools),
            rs.pyfloor(),
            rs.firejail(),
            rs.bwrap(),
            rs.strace("creat", bpf=False),
            rs.strace("creat", bpf=True),
            rs.Runner("python", "python -I -S -c pass (reference)", lambda a: _python_pass()),
        ],
        skipped,
    )
    jobs = {r.name: (lambda r=r: timed(r.cmd(["/bin/true"])) * 1e3) for r in runners}
    fork, fork_jobs = forkstart.jobs()  # side by side with the cold launchers
    try:
        samples = interleave({**jobs, **fork_jobs}, cfg.startup_rounds)
    finally:
        fork.close()
    samples["bubble-fork-exec"] = fork.to_start
    runners += [
        rs.Runner("bubble-fork", "bubble via the fork server", list),
        rs.Runner("bubble-fork-exec", "fork server, to the target's exec", list),
    ]
    med = {name: median(v) for name, v in samples.items()}
    rows = []
    for r in runners:
        v = samples[r.name]
        row = Row("(c) start-up of /bin/true, ms", r.label, med[r.name], "ms", noise=spread(v))
        row.samples, row.vs_native = v, ratio(med[r.name], med["native"])
        if "firejail" in med and r.name != "firejail":
            row.vs_ref, row.ref = ratio(med[r.name], med["firejail"]), "firejail"
            if r.name == "bubble":
                row.target, row.met = "≤ 1x firejail", row.vs_ref is not None and row.vs_ref <= 1
        if r.name == "bubble-fork-exec":
            row.target, row.met = "≤ 10 ms", med[r.name] <= 10
        rows.append(row)
    return rows


def _bubble_m(argv: list[str]) -> list[str]:
    """How the web orchestrator starts the launcher (`python -m bubble run --events-fd`)."""
    return [PYTHON, "-m", "bubble", "run", "--events", str(rs.EVENTS), "--", *argv]


def _python_pass() -> list[str]:
    """The interpreter Bubble runs on, doing nothing: the floor for any Python launcher."""
    return [PYTHON, "-I", "-S", "-c", "pass"]
