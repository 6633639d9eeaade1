"""Bubble's benchmark suite (issue 5). `make bench` = full run, writes docs/benchmarks.md and
the ratio plot; `make bench-quick` = under a minute, for CI, fails only on gross regressions.

    python bench/run.py [--quick] [--only abcde] [--rounds N] [--commit REV]
                        [--write-docs | --no-docs] [--no-profile | --profile-only]

Workloads: (a) denied creat calls with full events, (b) allowed-syscall-heavy programs,
(c) start-up of `bubble run -- /bin/true`, (d) events/s through the web stack, (e) POST to
first SSE event, (f) runs/minute through the web, (g) click to first card in Chromium.
Verdicts are ratios between runners measured side by side, never absolute times: these
machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import time

import allowedcalls
import checks
import report
import workloads
from common import OUT, ROOT, BenchError, Row, build, source_state, use_commit
from plot import plot

DOC = ROOT / "docs" / "benchmarks.md"
PNG = ROOT / "docs" / "benchmarks-ratios.png"


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="CI mode: < 1 min, gross checks only")
    p.add_argument("--only", help="workloads, e.g. --only ad (default: all; --quick: abcde)")
    p.add_argument("--rounds", type=int, help="override the number of interleaved rounds")
    p.add_argument("--write-docs", action="store_true", help="update docs (default: full mode)")
    p.add_argument("--no-docs", action="store_true", help="full mode without touching docs/")
    p.add_argument("--no-profile", action="store_true", help="skip the profiles (full mode)")
    p.add_argument("--profile-only", action="store_true", help="only profile; update docs")
    p.add_argument("--commit", help="measure src/ as committed at this revision (e.g. HEAD)")
    return p.parse_args(argv)


def _measure(args: argparse.Namespace, skipped: dict[str, str]) -> list[Row]:
    if args.only is None:  # CI's quick run leaves out the browser and the runs/minute
        args.only = "abcde" if args.quick else "abcdefg"
    cfg = workloads.QUICK if args.quick else workloads.FULL
    if args.rounds:
        cfg = dataclasses.replace(cfg, rounds=args.rounds, startup_rounds=args.rounds * 3)
    tools = build()
    rows: list[Row] = []
    steps = [
        ("a", "denied calls", workloads.denied),
        ("b", "allowed calls", allowedcalls.allowed),
        ("c", "start-up", workloads.startup),
    ]
    for key, name, fn in steps:
        if key in args.only:
            started = time.monotonic()
            print(f"bench: ({key}) {name} ...", file=sys.stderr, flush=True)
            rows += fn(tools, cfg, skipped)
            print(f"bench: ({key}) {time.monotonic() - started:.0f} s", file=sys.stderr)
    if "d" in args.only or "e" in args.only:
        import web  # requests and the server only when asked for

        print("bench: (d)+(e) web ...", file=sys.stderr, flush=True)
        n, floods, rounds = (20_000, 1, 3) if args.quick else (200_000, 2, 9)
        rows += web.measure(tools, n, floods, rounds)
    if "f" in args.only:
        import throughput

        print("bench: (f) runs/minute ...", file=sys.stderr, flush=True)
        rows += throughput.measure(10 if args.quick else 20, 1 if args.quick else 3)
    if "g" in args.only:
        import browser

        print("bench: (g) click to first card ...", file=sys.stderr, flush=True)
        rows += browser.measure(5)
    return rows


def _profiles(tools_n: int) -> dict[str, str]:
    import prof_flood
    import prof_startup

    tools = build()
    print("bench: profiling ...", file=sys.stderr, flush=True)
    us = prof_flood.per_call_us(tools, tools_n)
    return {
        "profile-flood-pyspy": prof_flood.pyspy(tools, tools_n, us),
        "profile-flood-cprofile": prof_flood.cprofile(tools, tools_n, us),
        "profile-micro": prof_flood.micro(),
        "profile-cpu-split": prof_flood.cpu_split(tools, 20_000),
        "profile-startup-timeline": prof_startup.timeline(),
        "profile-startup-imports": prof_startup.importtime(),
        "profile-startup-cprofile": prof_startup.cprofile(),
    }


def _write_docs(rows: list[Row], meta: dict[str, str], blocks: dict[str, str]) -> None:
    if rows:
        title = f"Bubble benchmark ratios, {meta['date']}, {meta['measured']}"
        if plot(rows, OUT / "ratios.png", title):
            shutil.copyfile(OUT / "ratios.png", PNG)
        else:
            print("bench: matplotlib missing: no plot (pip install matplotlib)", file=sys.stderr)
        blocks["meta"] = "\n".join(f"- **{k}**: {v}" for k, v in meta.items())
        blocks["results"] = report.markdown(rows)
    report.update_docs(DOC, blocks)
    print(f"bench: updated {DOC.relative_to(ROOT)} ({', '.join(blocks)})")


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    skipped: dict[str, str] = {}
    if args.commit:
        use_commit(args.commit)
    meta = report.machine()
    meta["measured"] = source_state()
    meta["command"] = "`" + " ".join(["bench/run.py", *(argv or sys.argv[1:])]) + "`"
    if args.profile_only:
        _write_docs([], meta, _profiles(50_000))
        return 0
    try:
        rows = _measure(args, skipped)
    except BenchError as err:
        print(f"bench: a workload did not run as assumed:\n{err}", file=sys.stderr)
        return 2
    meta["load at the end"] = report.machine()["load at the start"]
    print()
    print(report.terminal(rows))
    for what, why in skipped.items():
        print(f"skipped: {what}: {why}")
    failures = checks.gross(rows)
    for line in failures:
        print(f"GROSS REGRESSION: {line}")
    OUT.mkdir(exist_ok=True)
    report.dump(rows, OUT / "results.json", meta)
    full = not args.quick
    if (full and not args.no_docs) or args.write_docs:
        blocks = {
            "skipped": "\n".join(f"- {k}: {v}" for k, v in skipped.items()) or "- nothing",
            "checks": checks.describe(failures),
        }
        if full and not args.no_profile:
            blocks |= _profiles(50_000)
        _write_docs(rows, meta, blocks)
    # Only the quick (CI) mode fails the build, and only on gross regressions of ratios.
    return 1 if failures and args.quick else 0


if __name__ == "__main__":
    sys.exit(main())
