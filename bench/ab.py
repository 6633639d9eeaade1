"""Per-call A/B: Bubble's cost per denied `creat` (with its full event) for two source trees,
measured interleaved on the same machine, so a change to the hot path is judged against its
base under the same noise.

    python bench/ab.py [--base main] [--head WORKTREE|REV] [-n 20000] [--rounds 9]

Each side runs `python -m bubble run --events FILE -- probe flood N ...` and the same with 0
calls; µs per call = (run(N) - run(0)) / N, for wall clock and for CPU (user + sys of the
supervisor and the target). Prints medians with the interquartile spread, and the head/base
ratio per round pair (the steadiest figure on a shared machine).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

from common import OUT, PYTHON, ROOT, build, interleave, run

CREAT, DENIED_ARG = "85", "s:/proc/bench-denied/x"


def _tree(rev: str) -> str:
    """A src/ directory for `rev` (WORKTREE: this checkout's src, as it is now; a directory:
    a package tree to try, e.g. a patched copy)."""
    if rev == "WORKTREE":
        return str(ROOT / "src")
    if os.path.isdir(rev):
        return os.path.abspath(rev)
    git = ["git", "-C", str(ROOT)]
    sha = subprocess.run(
        [*git, "rev-parse", "--verify", f"{rev}^{{commit}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    dest = OUT / f"src-{sha[:12]}"
    if not dest.exists():
        archive = subprocess.run([*git, "archive", sha, "src"], capture_output=True, check=True)
        dest.mkdir(parents=True)
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
        subprocess.run([PYTHON, "-m", "compileall", "-q", str(dest / "src")], check=True)
    return str(dest / "src")


def _job(src: str, probe: str, calls: int, cpu: list[float]):
    events = OUT / "ab-events.ndjson"
    argv = [PYTHON, "-m", "bubble", "run", "--events", str(events), "--"]
    argv += [probe, "flood", str(calls), CREAT, DENIED_ARG, "0644"]
    expect = rf"FLOOD {calls} same={calls} errno=EPERM\b" if calls else r"FLOOD 0 "

    def once() -> float:
        old = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = src
        try:
            done = run(argv, expect)
        finally:
            if old is None:
                os.environ.pop("PYTHONPATH")
            else:
                os.environ["PYTHONPATH"] = old
        if calls:
            with open(events, "rb") as fh:
                got = sum(1 for line in fh if b'"policy.alert"' in line)
            if got != calls:
                raise SystemExit(f"{src}: {got} alert events for {calls} denied calls")
        cpu.append(done.cpu)
        return done.wall

    return once


def _iqr(values: list[float]) -> str:
    q = statistics.quantiles(values, n=4) if len(values) >= 4 else [min(values), 0, max(values)]
    return f"{statistics.median(values):6.2f} [{q[0]:.2f}-{q[2]:.2f}]"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/ab.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--base", default="main")
    p.add_argument("--head", default="WORKTREE")
    p.add_argument("-n", type=int, default=20_000)
    p.add_argument("--rounds", type=int, default=9)
    args = p.parse_args(argv)
    probe = build().probe
    sides = {"base": _tree(args.base), "head": _tree(args.head)}
    cpu: dict[str, list[float]] = {}
    jobs = {}
    for side, src in sides.items():
        for calls in (args.n, 0):
            key = f"{side}@{calls}"
            jobs[key] = _job(src, probe, calls, cpu.setdefault(key, []))
    wall = interleave(jobs, args.rounds)
    print(f"N={args.n:,}, {args.rounds} rounds; µs per denied call: median [IQR]")
    per: dict[str, dict[str, list[float]]] = {}
    for kind, samples in (("wall", wall), ("cpu", cpu)):
        for side in sides:
            full, zero = samples[f"{side}@{args.n}"], samples[f"{side}@0"]
            per.setdefault(kind, {})[side] = [
                (a - b) / args.n * 1e6 for a, b in zip(full, zero, strict=True)
            ]
        ratios = [h / b for h, b in zip(per[kind]["head"], per[kind]["base"], strict=True) if b > 0]
        print(
            f"{kind:4}  base {args.base}: {_iqr(per[kind]['base'])}   "
            f"head {args.head}: {_iqr(per[kind]['head'])}   "
            f"head/base {statistics.median(ratios):.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
