"""Workload (b): allowed-syscall-heavy programs, natively and under each sandbox.

Each loop, and `find`, is timed from inside the sandbox by bench/allowed.c itself, so a
sandbox's start-up jitter stays out of a measurement that must resolve 5 %.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import runners as rs
from common import Row, Tools, interleave, median, run, spread
from workloads import Config

LOOPS = (  # (mode, calls at scale 1): each about a third of a second natively here
    ("stat", 600_000),
    ("read", 1_000_000),
    ("open", 300_000),
    ("getppid", 3_000_000),
)
NS = re.compile(r"failures=0 ns=([0-9.]+) cpu_ns=([0-9.]+)")
OPEN_POLICY = ("--deny-fs=0", "--deny-net=0")
OPEN = " ".join(OPEN_POLICY)


def allowed(tools: Tools, cfg: Config, skipped: dict[str, str]) -> list[Row]:
    """Each loop, and `find`, is timed from inside the sandbox by `allowed` itself (its own
    clocks around the loop, or around fork+exec+wait of the program): a sandbox's start-up
    jitters by milliseconds and would drown a 5 % difference on a short workload. The verdict
    uses CPU time (see allowed.c); the wall-clock ratio is given alongside."""
    runners = rs.available(
        [
            rs.native(),
            rs.bubble("--keep-root", label="bubble (--keep-root)"),
            # Writes and network allowed: no Landlock write ruleset, fewer BPF rules. The
            # difference to the row above is what the default policy's defences cost.
            rs.bubble("--keep-root", *OPEN_POLICY, name="bubble-open", label="bubble " + OPEN),
            rs.floor(tools),
            rs.strace("creat", bpf=True),
            rs.firejail(),
        ],
        skipped,
    )
    skipped["strace (no --seccomp-bpf) on (b)"] = (
        "stops at every syscall (~20-30 µs each): minutes per run; (a) shows its per-stop cost"
    )
    work = {}
    for mode, calls in LOOPS:
        n = max(1000, int(calls * cfg.loop_scale))
        work[f"{mode} loop, CPU ns/call (N={n:,})"] = [tools.allowed, mode, str(n), "/etc/passwd"]
    find = ["find", cfg.find_root, "-type", "f"]
    work[f"{' '.join(find)}, CPU ms"] = [tools.allowed, "exec", "1", *find]
    wall: dict[str, list[float]] = {}

    def job(key: str, argv: list[str]) -> Callable[[], float]:
        def once() -> float:
            m = NS.search(run(argv, NS.pattern).stdout)
            assert m is not None  # run() checked the pattern
            wall.setdefault(key, []).append(float(m.group(1)))
            return float(m.group(2))

        return once

    jobs = {}
    for r in runners:
        for wl, argv in work.items():
            jobs[f"{r.name}:{wl}"] = job(f"{r.name}:{wl}", r.cmd(argv))
    samples = interleave(jobs, cfg.rounds)
    rows = []
    for wl in work:
        scale = 1e-6 if wl.startswith("find") else 1.0
        cpu = {r.name: [x * scale for x in samples[f"{r.name}:{wl}"]] for r in runners}
        walls = {r.name: wall[f"{r.name}:{wl}"] for r in runners}
        tol = None if wl.startswith("getppid") else 0.05  # getppid: worst case, for scale
        unit = "ms" if wl.startswith("find") else "ns"
        rows += _ratio_rows(f"(b) {wl}", cpu, walls, runners, unit, tol)
    return rows


def _per_round(values: list[float], native: list[float]) -> float:
    return median([x / y for x, y in zip(values, native, strict=True) if y > 0])


def _ratio_rows(
    wl: str,
    cpu: dict[str, list[float]],
    wall: dict[str, list[float]],
    runners: list[rs.Runner],
    unit: str,
    tol: float | None,
) -> list[Row]:
    """Rows for one allowed workload; the target is Bubble within `tol` of native, judged on
    the median of the per-round ratios (each round's runs ran side by side)."""
    rows = []
    for r in runners:
        v = cpu[r.name]
        row = Row(wl, r.label, median(v), unit, noise=spread(v), samples=v)
        row.vs_native = _per_round(v, cpu["native"]) if r.name != "native" else 1.0
        row.best_vs_native = min(v) / min(cpu["native"]) if min(cpu["native"]) > 0 else None
        if r.name.startswith("bubble"):
            row.note = (
                f"best-of-{len(v)} ratio {row.best_vs_native or 0:.2f}x, "
                f"wall-clock ratio {_per_round(wall[r.name], wall['native']):.2f}x"
            )
        if r.name == "bubble" and tol is not None:
            row.target, row.met = f"≤ {1 + tol:.2f}x native", row.vs_native <= 1 + tol
        rows.append(row)
    return rows
